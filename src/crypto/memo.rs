//! [`Memo`]: what one owner's keys computed for a device id, kept so a
//! device metered in every batch is HMACed and sealed once rather than with
//! every batch (usage is written per batch and per device, on produce and on
//! delivery). Both values are deterministic functions of the id under the
//! owner's keys (a device id's HMAC, and its SIV-style sealed bytes, see
//! `seal.rs`), so a remembered value is exactly what computing it again
//! gives: nothing about the stored format or its uniqueness changes.
//!
//! It lives inside [`super::TenantKeys`], so destroying a tenant's keys
//! (crypto-shredding evicts them from the keyring) drops it too. It holds
//! device ids in memory, as the process already does while it meters them.

use dashmap::DashMap;

/// Entries one owner's memo holds at most (about 100 bytes each: a device
/// id, its 32-byte tag, its ~40-byte sealed form). When full it starts over:
/// a tenant with more devices in flight than this pays the HMACs again,
/// nothing else changes.
const CAPACITY: usize = 4096;

/// Which computation a remembered value is the result of.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A device id's HMAC ([`super::DeviceTag`]).
    DeviceTag = 1,
    /// A field sealed deterministically.
    Sealed = 2,
}

/// Remembered (kind, field name, plaintext) → bytes, bounded.
#[derive(Default)]
pub(super) struct Memo {
    entries: DashMap<Vec<u8>, Vec<u8>>,
}

impl Memo {
    /// The value remembered for (`kind`, `what`, `plain`), or `compute`'s,
    /// remembered from now on.
    pub(super) fn get_or(
        &self,
        kind: Kind,
        what: &str,
        plain: &str,
        compute: impl FnOnce() -> Vec<u8>,
    ) -> Vec<u8> {
        // kind ‖ len(what) ‖ what ‖ plain: distinct inputs, distinct keys.
        let mut key = Vec::with_capacity(3 + what.len() + plain.len());
        key.push(kind as u8);
        key.extend_from_slice(&(what.len() as u16).to_be_bytes());
        key.extend_from_slice(what.as_bytes());
        key.extend_from_slice(plain.as_bytes());
        if let Some(value) = self.entries.get(&key) {
            return value.clone();
        }
        let value = compute();
        if self.entries.len() >= CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(key, value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_computed_once_and_inputs_never_share_an_entry() {
        let memo = Memo::default();
        let mut computed = 0;
        for _ in 0..3 {
            let v = memo.get_or(Kind::DeviceTag, "", "dev-1", || {
                computed += 1;
                b"tag".to_vec()
            });
            assert_eq!(v, b"tag");
        }
        assert_eq!(computed, 1);
        // Same plaintext, another kind or field name: another entry.
        assert_eq!(
            memo.get_or(Kind::Sealed, "", "dev-1", || b"s".to_vec()),
            b"s"
        );
        assert_eq!(
            memo.get_or(Kind::Sealed, "d", "ev-1", || b"t".to_vec()),
            b"t"
        );
        assert_eq!(
            memo.get_or(Kind::Sealed, "de", "v-1", || b"u".to_vec()),
            b"u"
        );
    }

    #[test]
    fn it_stays_bounded() {
        let memo = Memo::default();
        for i in 0..CAPACITY * 2 + 1 {
            memo.get_or(Kind::DeviceTag, "", &i.to_string(), Vec::new);
        }
        assert!(memo.entries.len() <= CAPACITY);
    }
}
