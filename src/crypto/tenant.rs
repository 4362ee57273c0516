//! A tenant's data key and the keys HKDF derives from it, one per purpose,
//! so no key ever serves two algorithms: message sets (AES-256-GCM), small
//! fields such as contact data and device ids (AES-256-GCM), the synthetic
//! nonces of deterministic fields (HMAC), dedup ids (HMAC) and device ids
//! (HMAC). Destroying the data key (crypto-shredding) destroys them all.

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::{hkdf, hmac};

use super::memo::{Kind, Memo};
use super::random_bytes;

/// Bytes of a data key (AES-256).
pub(crate) const KEY_LEN: usize = 32;

/// A random 256-bit data key. Stored only wrapped by the master key.
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> DataKey {
        let mut bytes = [0u8; KEY_LEN];
        random_bytes(&mut bytes);
        DataKey(bytes)
    }

    pub(super) fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(bytes)
    }

    pub(super) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Best effort: the derived keys live on in ring's key schedules.
        self.0 = [0; KEY_LEN];
    }
}

/// The keyed hash of a dedup id: what the store keeps instead of the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupTag(pub Vec<u8>);

/// The keyed hash of a device id: the usage key instead of the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceTag(pub Vec<u8>);

/// The unwrapped keys of one owner (a tenant, or the server for its
/// cross-tenant device bindings), derived from its data key.
pub struct TenantKeys {
    owner: String,
    pub(super) sets: LessSafeKey,
    pub(super) fields: LessSafeKey,
    pub(super) field_nonces: hmac::Key,
    dedup: hmac::Key,
    device: hmac::Key,
    /// Device tags and deterministically sealed fields already computed.
    pub(super) memo: Memo,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantKeys({})", self.owner)
    }
}

impl TenantKeys {
    /// Derives the keys of `owner` from its data key.
    pub fn derive(owner: &str, key: &DataKey) -> TenantKeys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tallyq data key v1").extract(key.expose());
        let aes = |info: &[u8]| {
            let info = [info];
            let okm = prk
                .expand(&info, &AES_256_GCM)
                .expect("HKDF output of one AES-256 key is within its limit");
            LessSafeKey::new(UnboundKey::from(okm))
        };
        let mac = |info: &[u8]| {
            let info = [info];
            let okm = prk
                .expand(&info, hmac::HMAC_SHA256)
                .expect("HKDF output of one HMAC key is within its limit");
            hmac::Key::from(okm)
        };
        TenantKeys {
            owner: owner.to_string(),
            sets: aes(b"message sets"),
            fields: aes(b"fields"),
            field_nonces: mac(b"field nonces"),
            dedup: mac(b"dedup ids"),
            device: mac(b"device ids"),
            memo: Memo::default(),
        }
    }

    /// Whose keys these are (bound into every set's associated data).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The keyed hash of `dedup_id` in topic `topic_id` (HMAC-SHA256).
    pub fn dedup_tag(&self, topic_id: u64, dedup_id: &str) -> DedupTag {
        if cfg!(feature = "bench-unencrypted") {
            return DedupTag(dedup_id.as_bytes().to_vec());
        }
        let mut context = hmac::Context::with_key(&self.dedup);
        context.update(&topic_id.to_be_bytes());
        context.update(dedup_id.as_bytes());
        DedupTag(context.sign().as_ref().to_vec())
    }

    /// The keyed hash of `device_id` (HMAC-SHA256), computed once per
    /// device id while these keys live (`memo.rs`): usage names a device
    /// with every batch that meters it.
    pub fn device_tag(&self, device_id: &str) -> DeviceTag {
        if cfg!(feature = "bench-unencrypted") {
            return DeviceTag(device_id.as_bytes().to_vec());
        }
        DeviceTag(self.memo.get_or(Kind::DeviceTag, "", device_id, || {
            hmac::sign(&self.device, device_id.as_bytes())
                .as_ref()
                .to_vec()
        }))
    }
}
