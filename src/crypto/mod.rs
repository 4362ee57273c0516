//! Encryption at rest: the master key, per-tenant data keys and what they
//! seal. Every primitive comes from `ring` (AES-256-GCM, HKDF-SHA256,
//! HMAC-SHA256; BoringSSL's assembly, which picks AES-NI and PCLMULQDQ at run
//! time on x86_64). Nothing here is home-made crypto: this module only
//! chooses keys, nonces and associated data.
//!
//! - `master.rs`: [`MasterKey`], the secret file (generated 0600 on first
//!   start), and wrapping a data key under it;
//! - `tenant.rs`: [`DataKey`] and the keys derived from it ([`TenantKeys`]):
//!   message sets, small fields (contact data, device ids), dedup and device
//!   HMACs;
//! - `seal.rs`: the sealed formats (a set body, a small field) and their
//!   associated data;
//! - `keyring.rs`: [`Keyring`], the in-memory cache of unwrapped keys the
//!   hot paths read, loaded from the store at start-up;
//! - `memo.rs`: per owner, the device tags and sealed device ids already
//!   computed, so a device metered with every batch is HMACed once;
//! - `journal.rs`: the sealed per-device usage journal record of a delivery pass.
//!
//! ARCHITECTURE.md ("Encryption at rest") gives the nonce scheme and the
//! threat model.

mod journal;
mod keyring;
mod master;
mod memo;
mod seal;
mod tenant;

pub use journal::{open_journal, seal_journal};
pub use keyring::{rewrap_all, Keyring, KeyringError};
pub use master::{load_or_create_master_key, read_or_generate_master_key, MasterKey};
pub use seal::{open_set, seal_set, set_header_space, SetAad, SET_OVERHEAD};
pub use tenant::{DataKey, DedupTag, DeviceTag, TenantKeys};

/// Why a sealed value could not be opened or a key not unwrapped. Carries no
/// detail on purpose: AES-GCM says only that the tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value is shorter than its format, or of an unknown format.
    #[error("sealed value is malformed")]
    Malformed,
    /// The authentication tag did not verify: wrong key, wrong associated
    /// data (another tenant, topic or offset) or altered bytes.
    #[error("sealed value does not verify (wrong key, moved or altered)")]
    Tag,
}

/// Fills `out` from the operating system's CSPRNG (ring's `SystemRandom`).
fn random_bytes(out: &mut [u8]) {
    use ring::rand::SecureRandom;
    // SystemRandom fails only when the OS has no randomness source at all,
    // in which case nothing can be keyed safely: a panic is the honest end.
    ring::rand::SystemRandom::new()
        .fill(out)
        .expect("the operating system's random number generator failed");
}
