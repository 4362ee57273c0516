//! The operator and billing-reader credentials: token files read at start-up
//! or generated there (mode 0600) on first start.

use std::io::Write;
use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};

/// Reads the operator credential from `path`, or generates one there (mode
/// 0600) when the file does not exist. Returns the token and whether it was
/// generated now. There is no fixed default credential.
pub fn load_or_create_operator_token(path: &Path) -> std::io::Result<(String, bool)> {
    load_or_create_token(path, "tqop_")
}

/// Like [`load_or_create_operator_token`], for the billing-reader credential.
pub fn load_or_create_billing_reader_token(path: &Path) -> std::io::Result<(String, bool)> {
    load_or_create_token(path, "tqbr_")
}

fn load_or_create_token(path: &Path, prefix: &str) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "operator credential in {} is shorter than 16 characters",
                        path.display()
                    ),
                ));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                crate::storage::create_private_dir(parent)?;
            }
            let token = format!(
                "{prefix}{}",
                Alphanumeric.sample_string(&mut rand::rng(), 43)
            );
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((token, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_token_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.token");
        let (first, created) = load_or_create_operator_token(&path).unwrap();
        assert!(created);
        assert!(first.len() > 40);
        let (second, created) = load_or_create_operator_token(&path).unwrap();
        assert!(!created);
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
