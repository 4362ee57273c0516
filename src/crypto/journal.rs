//! The sealed format of a per-device usage journal record
//! (`storage/repo/device_journal.rs`): the same layout as a set body (format
//! byte, nonce, ciphertext, tag), under the tenant's set key, with the
//! record's id as associated data.
//!
//! Its nonce is the record's id — drawn from the store's generator, which
//! sets draw their nonces from too, so no id repeats under this key — then
//! 32 random bits, exactly as a set's (`seal.rs`). The associated data
//! starts with its own label, so a record never opens as a set or a set as a
//! record.

use ring::aead::{Aad, Nonce, NONCE_LEN};

use super::tenant::TenantKeys;
use super::{random_bytes, CryptoError};

/// Format byte of an AES-256-GCM sealed record.
const SEALED: u8 = 1;
/// Format byte of a plaintext record (the `bench-unencrypted` build only).
const PLAIN: u8 = 0;
/// Bytes in front of the ciphertext.
const HEADER: usize = 1 + NONCE_LEN;

fn journal_aad(keys: &TenantKeys, id: u64) -> Vec<u8> {
    let owner = keys.owner().as_bytes();
    let mut aad = Vec::with_capacity(32 + owner.len());
    aad.extend_from_slice(b"tallyq usage journal v1\0");
    aad.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    aad.extend_from_slice(owner);
    aad.extend_from_slice(&id.to_be_bytes());
    aad
}

/// Seals an encoded journal record whose store id is `id` (never reused).
pub fn seal_journal(keys: &TenantKeys, id: u64, plain: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(HEADER + plain.len() + 16);
    if cfg!(feature = "bench-unencrypted") {
        body.resize(HEADER, 0);
        body[0] = PLAIN;
        body.extend_from_slice(plain);
        return body;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(&id.to_be_bytes());
    random_bytes(&mut nonce[8..]);
    body.push(SEALED);
    body.extend_from_slice(&nonce);
    body.extend_from_slice(plain);
    let tag = keys
        .sets
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(journal_aad(keys, id)),
            &mut body[HEADER..],
        )
        .expect("a journal record is far below AES-GCM's limit");
    body.extend_from_slice(tag.as_ref());
    body
}

/// Opens a record sealed by [`seal_journal`] for the same owner and `id`;
/// returns the encoded record.
pub fn open_journal(keys: &TenantKeys, id: u64, mut body: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
    match body.first() {
        Some(&PLAIN) if cfg!(feature = "bench-unencrypted") => {
            return Ok(body.get(HEADER..).unwrap_or_default().to_vec())
        }
        Some(&SEALED) if body.len() >= HEADER + 16 => {}
        _ => return Err(CryptoError::Malformed),
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&body[1..HEADER]).map_err(|_| CryptoError::Malformed)?;
    let len = keys
        .sets
        .open_in_place(nonce, Aad::from(journal_aad(keys, id)), &mut body[HEADER..])
        .map_err(|_| CryptoError::Tag)?
        .len();
    body.drain(..HEADER);
    body.truncate(len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;

    #[test]
    fn a_record_opens_only_with_its_key_and_id() {
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let other = TenantKeys::derive("other", &DataKey::generate());
        let sealed = seal_journal(&acme, 7, b"device-MARKER");
        assert!(!sealed.windows(13).any(|w| w == b"device-MARKER"));
        assert_eq!(
            open_journal(&acme, 7, sealed.clone()).unwrap(),
            b"device-MARKER"
        );
        assert_eq!(
            open_journal(&acme, 8, sealed.clone()),
            Err(CryptoError::Tag)
        );
        assert_eq!(
            open_journal(&other, 7, sealed.clone()),
            Err(CryptoError::Tag)
        );
        let mut altered = sealed;
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(open_journal(&acme, 7, altered), Err(CryptoError::Tag));
        assert_eq!(
            open_journal(&acme, 7, vec![1, 2]),
            Err(CryptoError::Malformed)
        );
    }
}
