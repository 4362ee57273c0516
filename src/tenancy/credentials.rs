//! The operator and billing-reader credentials: token files read at start-up
//! or generated there (mode 0600) on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

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
    let credential = read_or_generate(path, prefix)?;
    if credential.generated {
        credential.write()?;
    }
    Ok((credential.token, credential.generated))
}

/// What deploy/k8s/secret.yaml ships in place of real secrets; a credential
/// file that starts with it was deployed without replacing the placeholder.
pub const PLACEHOLDER_PREFIX: &str = "REPLACE-WITH-";

/// A credential read from its file, or generated in memory and not yet
/// written: the server writes it only once everything else has started, so a
/// failed start leaves no credential file behind.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The credential file.
    pub path: PathBuf,
    /// The secret.
    pub token: String,
    /// True when the file did not exist and the token was generated now.
    pub generated: bool,
}

impl Credential {
    /// Writes a generated credential to its file (mode 0600, created new,
    /// synced); does nothing for one that was read.
    pub fn write(&self) -> std::io::Result<()> {
        if !self.generated {
            return Ok(());
        }
        if let Some(parent) = self.path.parent() {
            crate::storage::create_private_dir(parent)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&self.path)?;
        file.write_all(self.token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    }
}

/// Reads the operator credential from `path`, or generates one in memory
/// (to be [written](Credential::write)) when the file does not exist.
pub fn read_or_generate_operator_token(path: &Path) -> std::io::Result<Credential> {
    read_or_generate(path, "tqop_")
}

/// Like [`read_or_generate_operator_token`], for the billing-reader credential.
pub fn read_or_generate_billing_reader_token(path: &Path) -> std::io::Result<Credential> {
    read_or_generate(path, "tqbr_")
}

/// Reads `path`, refusing a too-short credential and deploy/'s placeholder;
/// generates a random one (`prefix` + 43 alphanumerics) when it is missing.
fn read_or_generate(path: &Path, prefix: &str) -> std::io::Result<Credential> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.starts_with(PLACEHOLDER_PREFIX) {
                return Err(invalid(format!(
                    "it holds the placeholder '{token}', not a credential: \
                     put a long random secret there (e.g. `openssl rand -base64 48`)"
                )));
            }
            if token.len() < 16 {
                return Err(invalid(format!(
                    "the credential in {} is shorter than 16 characters",
                    path.display()
                )));
            }
            Ok(Credential {
                path: path.to_path_buf(),
                token,
                generated: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credential {
            path: path.to_path_buf(),
            token: format!(
                "{prefix}{}",
                Alphanumeric.sample_string(&mut rand::rng(), 43)
            ),
            generated: true,
        }),
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
        std::fs::write(&path, "REPLACE-WITH-A-LONG-RANDOM-OPERATOR-TOKEN\n").unwrap();
        let refused = load_or_create_operator_token(&path).unwrap_err();
        assert!(refused.to_string().contains("placeholder"), "{refused}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
