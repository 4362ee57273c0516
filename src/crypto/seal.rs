//! Sealed formats. A message set body: format byte (1 = AES-256-GCM), a
//! 96-bit nonce, the ciphertext of the encoded set and its 128-bit tag, with
//! the set's identity as associated data. A field (contact data, a device
//! id): format byte, nonce, ciphertext, tag, with what the field is as
//! associated data.
//!
//! Nonces never repeat under one key:
//! - a set's nonce is a 64-bit id from the store's generator (sled's
//!   `generate_id`, never reused even across crashes: sled persists a
//!   high-water mark and skips past it at recovery) followed by 32 random
//!   bits (so even a store restored from a backup, whose generator runs
//!   again from an older value, repeats a nonce only if 32 random bits also
//!   collide). It is stored in the body, so a set copied elsewhere
//!   (compaction) is never sealed again and keeps its nonce;
//! - a field's nonce is random (96 bits) for contact data, written a few
//!   times per tenant, far below the 2^32 bound for random nonces; a device
//!   id's is synthetic: the first 96 bits of an HMAC of the id under a key
//!   of its own, so the same id always seals to the same bytes (it is
//!   written with every batch that meters it) and two different ids share a
//!   nonce only if HMAC-SHA256 collides in 96 bits.

use ring::aead::{self, Aad, Nonce, NONCE_LEN};
use ring::hmac;

use super::memo::Kind;
use super::tenant::TenantKeys;
use super::{random_bytes, CryptoError};

/// Format byte of an AES-256-GCM sealed value.
const SEALED: u8 = 1;
/// Format byte of a plaintext set or deterministic field (only the
/// measurement-only `bench-unencrypted` build writes or reads it).
const PLAIN: u8 = 0;
/// Bytes in front of a sealed body's ciphertext.
const HEADER: usize = 1 + NONCE_LEN;
/// Bytes sealing adds to a set body (format, nonce, tag).
pub const SET_OVERHEAD: usize = HEADER + aead::MAX_TAG_LEN;

/// What a sealed set is bound to: its tenant (the keys' owner), topic and
/// first offset. A set replayed under another topic or offset, or sealed by
/// another tenant's key, fails its tag.
#[derive(Debug, Clone, Copy)]
pub struct SetAad {
    /// The topic's id (never reused).
    pub topic_id: u64,
    /// The set's first offset.
    pub first_offset: u64,
}

fn set_aad(keys: &TenantKeys, at: SetAad) -> Vec<u8> {
    let owner = keys.owner().as_bytes();
    let mut aad = Vec::with_capacity(16 + owner.len() + 18);
    aad.extend_from_slice(b"tallyq set v1\0");
    aad.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    aad.extend_from_slice(owner);
    aad.extend_from_slice(&at.topic_id.to_be_bytes());
    aad.extend_from_slice(&at.first_offset.to_be_bytes());
    aad
}

/// Seals a set body in place. `body` holds [`SET_OVERHEAD`] - 16 reserved
/// bytes followed by the encoded set; `unique` is a never-reused id from the
/// store. On return `body` is the sealed body.
pub fn seal_set(keys: &TenantKeys, at: SetAad, unique: u64, body: &mut Vec<u8>) {
    if cfg!(feature = "bench-unencrypted") {
        body[0] = PLAIN;
        return;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(&unique.to_be_bytes());
    random_bytes(&mut nonce[8..]);
    body[0] = SEALED;
    body[1..HEADER].copy_from_slice(&nonce);
    let tag = keys
        .sets
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(set_aad(keys, at)),
            &mut body[HEADER..],
        )
        .expect("a message set is far below AES-GCM's 64 GiB limit");
    body.extend_from_slice(tag.as_ref());
}

/// Opens a sealed set body in place; returns the range of `body` that holds
/// the encoded set.
pub fn open_set(
    keys: &TenantKeys,
    at: SetAad,
    body: &mut [u8],
) -> Result<std::ops::Range<usize>, CryptoError> {
    match body.first() {
        Some(&PLAIN) if cfg!(feature = "bench-unencrypted") => return Ok(HEADER..body.len()),
        Some(&SEALED) if body.len() >= SET_OVERHEAD => {}
        _ => return Err(CryptoError::Malformed),
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&body[1..HEADER]).map_err(|_| CryptoError::Malformed)?;
    let plain = keys
        .sets
        .open_in_place(nonce, Aad::from(set_aad(keys, at)), &mut body[HEADER..])
        .map_err(|_| CryptoError::Tag)?;
    Ok(HEADER..HEADER + plain.len())
}

/// The bytes reserved in front of an encoded set for [`seal_set`].
pub fn set_header_space() -> Vec<u8> {
    vec![0u8; HEADER]
}

impl TenantKeys {
    /// Seals a field (`what` names it: bound as associated data) under a
    /// random nonce. Empty stays empty (nothing to hide, and an erased field
    /// reads as empty).
    pub fn seal_field(&self, what: &str, plain: &str) -> Vec<u8> {
        if plain.is_empty() {
            return Vec::new();
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        self.seal_field_with(what, plain, nonce)
    }

    /// Seals a field deterministically: the nonce is an HMAC of the field,
    /// so the same value always seals to the same bytes (see the module doc).
    /// The same bytes every time, so they are computed once per value while
    /// these keys live (`memo.rs`): a device id is sealed into every batch's
    /// usage that meters it.
    pub fn seal_field_deterministic(&self, what: &str, plain: &str) -> Vec<u8> {
        if plain.is_empty() {
            return Vec::new();
        }
        if cfg!(feature = "bench-unencrypted") {
            return [&[PLAIN], plain.as_bytes()].concat();
        }
        self.memo.get_or(Kind::Sealed, what, plain, || {
            let mut context = hmac::Context::with_key(&self.field_nonces);
            context.update(what.as_bytes());
            context.update(&[0]);
            context.update(plain.as_bytes());
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&context.sign().as_ref()[..NONCE_LEN]);
            self.seal_field_with(what, plain, nonce)
        })
    }

    fn seal_field_with(&self, what: &str, plain: &str, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + plain.len() + aead::MAX_TAG_LEN);
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain.as_bytes());
        let tag = self
            .fields
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field_aad(self, what)),
                &mut out[HEADER..],
            )
            .expect("a field is far below AES-GCM's limit");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens a field sealed by [`TenantKeys::seal_field`] or
    /// [`TenantKeys::seal_field_deterministic`] for the same `what`.
    pub fn open_field(&self, what: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        if cfg!(feature = "bench-unencrypted") && sealed[0] == PLAIN {
            return String::from_utf8(sealed[1..].to_vec()).map_err(|_| CryptoError::Malformed);
        }
        if sealed.len() < SET_OVERHEAD || sealed[0] != SEALED {
            return Err(CryptoError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..HEADER])
            .map_err(|_| CryptoError::Malformed)?;
        let mut body = sealed[HEADER..].to_vec();
        let plain = self
            .fields
            .open_in_place(nonce, Aad::from(field_aad(self, what)), &mut body)
            .map_err(|_| CryptoError::Tag)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::Malformed)
    }
}

fn field_aad(keys: &TenantKeys, what: &str) -> Vec<u8> {
    let mut aad = b"tallyq field v1\0".to_vec();
    aad.extend_from_slice(keys.owner().as_bytes());
    aad.push(0);
    aad.extend_from_slice(what.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;

    fn sealed(keys: &TenantKeys, at: SetAad, plain: &[u8]) -> Vec<u8> {
        let mut body = set_header_space();
        body.extend_from_slice(plain);
        seal_set(keys, at, 7, &mut body);
        body
    }

    #[test]
    fn a_set_opens_only_with_its_key_topic_and_offset() {
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let other = TenantKeys::derive("other", &DataKey::generate());
        let at = SetAad {
            topic_id: 3,
            first_offset: 100,
        };
        let mut body = sealed(&acme, at, b"marker-payload");
        assert_eq!(body.len(), 14 + SET_OVERHEAD);
        assert!(!body.windows(6).any(|w| w == b"marker"));
        let mut copy = body.clone();
        let range = open_set(&acme, at, &mut copy).unwrap();
        assert_eq!(&copy[range], b"marker-payload");
        for (keys, at) in [
            (&other, at),
            (
                &acme,
                SetAad {
                    first_offset: 101,
                    ..at
                },
            ),
            (&acme, SetAad { topic_id: 4, ..at }),
        ] {
            let mut copy = body.clone();
            assert_eq!(open_set(keys, at, &mut copy), Err(CryptoError::Tag));
        }
        body[HEADER] ^= 1;
        assert_eq!(open_set(&acme, at, &mut body), Err(CryptoError::Tag));
    }

    #[test]
    fn fields_open_for_their_owner_and_name_only() {
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let sealed = acme.seal_field("contact_email", "ops@acme.test");
        assert_eq!(
            acme.open_field("contact_email", &sealed).unwrap(),
            "ops@acme.test"
        );
        assert!(acme.open_field("display_name", &sealed).is_err());
        assert_ne!(sealed, acme.seal_field("contact_email", "ops@acme.test"));
        let device = acme.seal_field_deterministic("device", "imei-1");
        assert_eq!(device, acme.seal_field_deterministic("device", "imei-1"));
        assert_ne!(device, acme.seal_field_deterministic("device", "imei-2"));
        assert_eq!(acme.open_field("device", &device).unwrap(), "imei-1");
        assert_eq!(acme.open_field("device", &[]).unwrap(), "");
    }

    /// A device id's tag and sealed bytes, remembered after the first batch,
    /// are exactly what a broker that never saw the id computes (the same
    /// key after a restart), and another tenant's differ.
    #[test]
    fn remembered_device_values_equal_freshly_computed_ones() {
        let bytes = [7u8; crate::crypto::tenant::KEY_LEN];
        let running = TenantKeys::derive("acme", &DataKey::from_bytes(bytes));
        for _ in 0..3 {
            running.device_tag("imei-1");
            running.seal_field_deterministic("usage.device_id", "imei-1");
        }
        let restarted = TenantKeys::derive("acme", &DataKey::from_bytes(bytes));
        let sealed = running.seal_field_deterministic("usage.device_id", "imei-1");
        assert_eq!(
            sealed,
            restarted.seal_field_deterministic("usage.device_id", "imei-1")
        );
        assert_eq!(running.device_tag("imei-1"), restarted.device_tag("imei-1"));
        assert_eq!(
            restarted.open_field("usage.device_id", &sealed).unwrap(),
            "imei-1"
        );
        // Remembered under one field name, the bytes are not handed out for
        // another (each name binds its own associated data).
        let other_name = running.seal_field_deterministic("other", "imei-1");
        assert_ne!(other_name, sealed);
        assert_eq!(running.open_field("other", &other_name).unwrap(), "imei-1");
        assert_ne!(running.device_tag("imei-1"), running.device_tag("imei-2"));
        let other = TenantKeys::derive("other", &DataKey::generate());
        assert_ne!(other.device_tag("imei-1"), running.device_tag("imei-1"));
        assert!(other.open_field("usage.device_id", &sealed).is_err());
    }
}
