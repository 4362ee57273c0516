//! The ledger: append-only, numbered by a global sequence, each entry
//! carrying a SHA-256 hash chained to the previous entry, so an edit anywhere
//! breaks the chain from that entry on.
//!
//! Canonical encoding: the entry's protobuf encoding with `hash` cleared
//! (prost writes fields in tag order and the entry has no maps, so the
//! encoding of a given entry is always the same bytes). `hash =
//! SHA-256(prev_hash ‖ canonical encoding)`; the first entry's `prev_hash` is
//! 32 zero bytes.

use sha2::{Digest, Sha256};

/// What an entry records.
pub mod kind {
    /// A priced line of a settled day.
    pub const CHARGE: &str = "charge";
    /// A payment received.
    pub const PAYMENT: &str = "payment";
    /// The final statement of a terminated tenant.
    pub const FINAL_STATEMENT: &str = "final_statement";
    /// A tenant's balance leaving this broker with a move (amount: minus the
    /// balance, so the account here ends at 0).
    pub const MOVED_OUT: &str = "moved_out";
    /// A tenant's balance and the month's free units used arriving with a
    /// move (amount: the balance it had on the source).
    pub const MOVED_IN: &str = "moved_in";
}

/// One ledger entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LedgerEntry {
    /// Global sequence number, from 1, without gaps.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// The broker that wrote it (billing jobs merge nodes by (node, sequence)).
    #[prost(string, tag = "2")]
    pub node_id: String,
    /// The tenant.
    #[prost(string, tag = "3")]
    pub tenant: String,
    /// "charge", "payment", "final_statement", "moved_out" or "moved_in".
    #[prost(string, tag = "4")]
    pub kind: String,
    /// The billing day "YYYY-MM-DD" of a charge ("" otherwise).
    #[prost(string, tag = "5")]
    pub day: String,
    /// The meter of a charge: message_units, topic_days, storage_gib_hours.
    #[prost(string, tag = "6")]
    pub meter: String,
    /// Quantity measured (storage in milli-GiB-hours).
    #[prost(uint64, tag = "7")]
    pub quantity: u64,
    /// Free allowance applied to it.
    #[prost(uint64, tag = "8")]
    pub free_applied: u64,
    /// quantity - free_applied.
    #[prost(uint64, tag = "9")]
    pub billable: u64,
    /// Price of one quantity unit in billionths of a minor unit.
    #[prost(uint64, tag = "10")]
    pub unit_price_nano_minor: u64,
    /// Amount in minor units (charges, payments; for a final statement the
    /// balance: positive to refund, negative owed).
    #[prost(int64, tag = "11")]
    pub amount_minor: i64,
    /// ISO currency code.
    #[prost(string, tag = "12")]
    pub currency: String,
    /// `tenant/day/meter` for charges, `payment/<id>` for payments,
    /// `tenant/final_statement` for a final statement.
    #[prost(string, tag = "13")]
    pub idempotency_key: String,
    /// When the entry was written, Unix ms.
    #[prost(int64, tag = "14")]
    pub created_ms: i64,
    /// When a charge fell due (the end of its day), Unix ms.
    #[prost(int64, tag = "15")]
    pub due_ms: i64,
    /// Parts of message_units.
    #[prost(uint64, tag = "16")]
    pub produced_units: u64,
    /// Parts of message_units.
    #[prost(uint64, tag = "17")]
    pub delivered_units: u64,
    /// Part of delivered_units.
    #[prost(uint64, tag = "18")]
    pub redelivered_units: u64,
    /// Free text (payment reference, termination reason).
    #[prost(string, tag = "19")]
    pub note: String,
    /// Hash of the previous entry.
    #[prost(bytes = "vec", tag = "20")]
    pub prev_hash: Vec<u8>,
    /// SHA-256(prev_hash ‖ canonical encoding).
    #[prost(bytes = "vec", tag = "21")]
    pub hash: Vec<u8>,
}

/// The hash an entry must carry, given its fields (its `hash` is ignored).
pub fn entry_hash(entry: &LedgerEntry) -> Vec<u8> {
    let mut canonical = entry.clone();
    canonical.hash.clear();
    let mut hasher = Sha256::new();
    hasher.update(&entry.prev_hash);
    hasher.update(prost::Message::encode_to_vec(&canonical));
    hasher.finalize().to_vec()
}

/// The prev_hash of the first entry.
pub fn genesis_hash() -> Vec<u8> {
    vec![0; 32]
}

/// Where and why a chain check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {sequence} is invalid: {reason}")]
pub struct ChainBroken {
    /// The first bad entry.
    pub sequence: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks entries in order, from sequence 1 on; returns how many were checked.
pub fn verify_chain(entries: impl IntoIterator<Item = LedgerEntry>) -> Result<u64, ChainBroken> {
    let mut expected_sequence = 1;
    let mut prev_hash = genesis_hash();
    for entry in entries {
        let broken = |reason: String| ChainBroken {
            sequence: entry.sequence,
            reason,
        };
        if entry.sequence != expected_sequence {
            return Err(ChainBroken {
                sequence: expected_sequence,
                reason: format!("missing; found sequence {} next", entry.sequence),
            });
        }
        if entry.prev_hash != prev_hash {
            return Err(broken(
                "its prev_hash does not match the previous entry's hash".into(),
            ));
        }
        if entry.hash != entry_hash(&entry) {
            return Err(broken("its hash does not match its contents".into()));
        }
        prev_hash = entry.hash.clone();
        expected_sequence += 1;
    }
    Ok(expected_sequence - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<LedgerEntry> {
        let mut prev = genesis_hash();
        (1..=n)
            .map(|sequence| {
                let mut e = LedgerEntry {
                    sequence,
                    tenant: "acme".into(),
                    amount_minor: 100,
                    prev_hash: prev.clone(),
                    ..Default::default()
                };
                e.hash = entry_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(chain(5)), Ok(5));
    }

    #[test]
    fn an_edit_names_the_edited_entry() {
        let mut entries = chain(5);
        entries[2].amount_minor = 1;
        assert_eq!(verify_chain(entries).unwrap_err().sequence, 3);
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut entries = chain(5);
        entries[2].amount_minor = 1;
        entries[2].hash = entry_hash(&entries[2]);
        assert_eq!(verify_chain(entries).unwrap_err().sequence, 4);
    }

    #[test]
    fn a_removed_entry_is_a_gap() {
        let mut entries = chain(5);
        entries.remove(1);
        assert_eq!(verify_chain(entries).unwrap_err().sequence, 2);
    }
}
