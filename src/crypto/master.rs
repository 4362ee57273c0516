//! The master key: 32 random bytes in a secret file (hex), read at start-up
//! or generated there with mode 0600 on first start, like the operator
//! credential. It never encrypts data itself: HKDF derives a key-encryption
//! key from it, which wraps each data key with AES-256-GCM (a random 96-bit
//! nonce per wrap; wraps happen once per tenant and per rotation, far below
//! the 2^32 random-nonce bound), the tenant id bound as associated data so a
//! wrapped key cannot be moved to another tenant.

use std::io::Write;
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;

use super::tenant::{DataKey, KEY_LEN};
use super::{random_bytes, CryptoError};

/// Associated data prefix of a wrapped key (then the owner's name).
const WRAP_AAD: &[u8] = b"tallyq wrapped key v1\0";

/// The master key, as its key-encryption key (the raw bytes are dropped once
/// it is derived).
pub struct MasterKey {
    kek: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The master key of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> MasterKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tallyq master key v1").extract(bytes);
        let okm = prk
            .expand(&[b"key-encryption key"], &AES_256_GCM)
            .expect("HKDF output of one AES-256 key is within its limit");
        MasterKey {
            kek: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// Wraps `key` for `owner` (a tenant id, or the server's own name):
    /// nonce ‖ ciphertext ‖ tag, 60 bytes.
    pub fn wrap(&self, owner: &str, key: &DataKey) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + KEY_LEN + aead::MAX_TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.expose());
        let tag = self
            .kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(owner)),
                &mut out[NONCE_LEN..],
            )
            .expect("sealing 32 bytes is within AES-GCM's limit");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Unwraps a key [`MasterKey::wrap`] wrapped for `owner`; fails when it
    /// was wrapped by another master key, for another owner, or altered.
    pub fn unwrap_key(&self, owner: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        if wrapped.len() != NONCE_LEN + KEY_LEN + aead::MAX_TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&wrapped[..NONCE_LEN])
            .map_err(|_| CryptoError::Malformed)?;
        let mut body = wrapped[NONCE_LEN..].to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(wrap_aad(owner)), &mut body)
            .map_err(|_| CryptoError::Tag)?;
        let bytes: [u8; KEY_LEN] = plain.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey::from_bytes(bytes))
    }
}

fn wrap_aad(owner: &str) -> Vec<u8> {
    let mut aad = WRAP_AAD.to_vec();
    aad.extend_from_slice(owner.as_bytes());
    aad
}

/// Reads the master key from `path` (64 hex digits), or generates one in
/// memory when the file does not exist: the returned credential writes it
/// (mode 0600, created new, synced) once the broker has opened its store,
/// like the operator credential, so a start that fails creates nothing.
pub fn read_or_generate_master_key(
    path: &Path,
) -> std::io::Result<(MasterKey, crate::tenancy::Credential)> {
    let credential = |token: String, generated| crate::tenancy::Credential {
        path: path.to_path_buf(),
        token,
        generated,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((parse(path, &text)?, credential(String::new(), false))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; KEY_LEN];
            random_bytes(&mut bytes);
            Ok((
                MasterKey::from_bytes(&bytes),
                credential(hex::encode(bytes), true),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Reads the master key from `path` (64 hex digits), or generates one there
/// (mode 0600, synced) when the file does not exist. Returns the key and
/// whether it was generated now.
pub fn load_or_create_master_key(path: &Path) -> std::io::Result<(MasterKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((parse(path, &text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                crate::storage::create_private_dir(parent)?;
            }
            let mut bytes = [0u8; KEY_LEN];
            random_bytes(&mut bytes);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            file.write_all(hex::encode(bytes).as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((MasterKey::from_bytes(&bytes), true))
        }
        Err(e) => Err(e),
    }
}

/// The key in a master key file's text.
fn parse(path: &Path, text: &str) -> std::io::Result<MasterKey> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "master key file {} must hold 64 hex digits (a 256-bit key)",
                path.display()
            ),
        )
    };
    let bytes = hex::decode(text.trim()).map_err(|_| invalid())?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| invalid())?;
    Ok(MasterKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_under_its_master_and_owner() {
        let (a, b) = (
            MasterKey::from_bytes(&[1; 32]),
            MasterKey::from_bytes(&[2; 32]),
        );
        let key = DataKey::generate();
        let wrapped = a.wrap("acme", &key);
        assert_eq!(
            a.unwrap_key("acme", &wrapped).unwrap().expose(),
            key.expose()
        );
        assert_eq!(
            b.unwrap_key("acme", &wrapped).unwrap_err(),
            CryptoError::Tag
        );
        assert_eq!(
            a.unwrap_key("other", &wrapped).unwrap_err(),
            CryptoError::Tag
        );
        assert!(!wrapped.windows(32).any(|w| w == key.expose()));
    }

    #[test]
    fn the_key_file_is_generated_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let (first, created) = load_or_create_master_key(&path).unwrap();
        assert!(created);
        let (second, created) = load_or_create_master_key(&path).unwrap();
        assert!(!created);
        let key = DataKey::generate();
        let wrapped = first.wrap("t", &key);
        assert!(second.unwrap_key("t", &wrapped).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        let error = load_or_create_master_key(&path).unwrap_err();
        assert!(error.to_string().contains("64 hex digits"), "{error}");
    }
}
