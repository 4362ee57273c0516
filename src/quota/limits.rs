//! Shape checks: is one request within the tenant's plan (sizes, counts,
//! ranges)? The broker and control plane call them before any work is queued,
//! so a refused request changes nothing.
//!
//! The checks are methods on [`Plan`] (`plan.check_batch(..)`), written here
//! so that `crate::plan` stays a leaf that knows nothing of messages.

use crate::error::{Error, Result};
use crate::plan::{Plan, GIB, KIB, MIB};

/// The size of one message as quotas and billing count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSize {
    /// payload + header keys and values + device_id + dedup_id, in bytes.
    pub bytes: u64,
    /// Bytes of header keys and values alone.
    pub header_bytes: u64,
}

/// What the quota check needs to see of one message.
pub struct MessageShape<'a> {
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Header keys and values.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Device id ("" when absent).
    pub device_id: &'a str,
    /// Dedup id ("" when absent).
    pub dedup_id: &'a str,
}

impl MessageShape<'_> {
    /// The message's counted size.
    pub fn size(&self) -> MessageSize {
        let header_bytes: u64 = self
            .headers
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        MessageSize {
            bytes: self.payload_len as u64
                + header_bytes
                + self.device_id.len() as u64
                + self.dedup_id.len() as u64,
            header_bytes,
        }
    }
}

impl Plan {
    /// Checks a whole produce batch against the plan; returns each message's
    /// size. Any violation refuses the batch whole with INVALID_ARGUMENT.
    pub fn check_batch(&self, messages: &[MessageShape<'_>]) -> Result<Vec<MessageSize>> {
        if messages.is_empty() {
            return Err(Error::invalid(
                "a produce batch must contain at least one message",
            ));
        }
        if messages.len() > self.max_batch_messages as usize {
            return Err(Error::invalid(format!(
                "batch of {} messages exceeds the limit of {} messages per batch",
                messages.len(),
                self.max_batch_messages
            )));
        }
        let mut sizes = Vec::with_capacity(messages.len());
        let mut total = 0u64;
        for (index, message) in messages.iter().enumerate() {
            let size = self.check_message(index, message)?;
            total += size.bytes;
            sizes.push(size);
        }
        if total > self.max_batch_bytes {
            return Err(Error::invalid(format!(
                "batch of {total} bytes exceeds the limit of {} bytes ({}) per batch",
                self.max_batch_bytes,
                human_bytes(self.max_batch_bytes)
            )));
        }
        Ok(sizes)
    }

    fn check_message(&self, index: usize, m: &MessageShape<'_>) -> Result<MessageSize> {
        let size = m.size();
        if m.headers.len() > self.max_headers as usize {
            return Err(Error::invalid(format!(
                "message {index} has {} headers; the limit is {} headers per message",
                m.headers.len(),
                self.max_headers
            )));
        }
        if size.header_bytes > self.max_header_bytes {
            return Err(Error::invalid(format!(
                "message {index} has {} bytes of headers; the limit is {} bytes ({})",
                size.header_bytes,
                self.max_header_bytes,
                human_bytes(self.max_header_bytes)
            )));
        }
        if m.headers.iter().any(|(k, _)| k.is_empty()) {
            return Err(Error::invalid(format!(
                "message {index} has a header with an empty name"
            )));
        }
        let device_chars = m.device_id.chars().count();
        if device_chars > self.max_device_id_chars as usize {
            return Err(Error::invalid(format!(
                "message {index} has a device_id of {device_chars} characters; the limit is {}",
                self.max_device_id_chars
            )));
        }
        let dedup_chars = m.dedup_id.chars().count();
        if dedup_chars > self.max_dedup_id_chars as usize {
            return Err(Error::invalid(format!(
                "message {index} has a dedup_id of {dedup_chars} characters; the limit is {}",
                self.max_dedup_id_chars
            )));
        }
        if size.bytes > self.max_message_bytes {
            return Err(Error::invalid(format!(
                "message {index} is {} bytes; the limit is {} bytes ({}) per message, \
                 counting payload, headers, device_id and dedup_id",
                size.bytes,
                self.max_message_bytes,
                human_bytes(self.max_message_bytes)
            )));
        }
        Ok(size)
    }

    /// Checks a message expiry against the plan's range.
    pub fn check_expiry(&self, seconds: u64) -> Result<()> {
        if !(self.min_message_expiry_seconds..=self.max_message_expiry_seconds).contains(&seconds) {
            return Err(Error::invalid(format!(
                "message_expiry_seconds {seconds} is out of range: it must be between {} and {} seconds",
                self.min_message_expiry_seconds, self.max_message_expiry_seconds
            )));
        }
        Ok(())
    }

    /// Checks a topic size cap: positive and not above the plan's.
    pub fn check_topic_bytes(&self, bytes: u64) -> Result<()> {
        if bytes == 0 || bytes > self.max_topic_bytes {
            return Err(Error::invalid(format!(
                "max_bytes {bytes} is out of range: a topic's size cap must be between 1 and {} bytes ({})",
                self.max_topic_bytes,
                human_bytes(self.max_topic_bytes)
            )));
        }
        Ok(())
    }

    /// Checks a dedup window.
    pub fn check_dedup_window(&self, seconds: u64) -> Result<()> {
        if seconds == 0 || seconds > self.max_dedup_window_seconds {
            return Err(Error::invalid(format!(
                "dedup_window_seconds {seconds} is out of range: it must be between 1 and {} seconds",
                self.max_dedup_window_seconds
            )));
        }
        Ok(())
    }

    /// Checks a subscription lock time: 0 (at-most-once) or within the plan's range.
    pub fn check_lock(&self, seconds: u32) -> Result<()> {
        if seconds != 0 && !(self.min_lock_seconds..=self.max_lock_seconds).contains(&seconds) {
            return Err(Error::invalid(format!(
                "lock_seconds {seconds} is out of range: it must be 0 (at-most-once) or between {} and {} seconds",
                self.min_lock_seconds, self.max_lock_seconds
            )));
        }
        Ok(())
    }
}

/// "1 GiB", "256 KiB", "4 MiB" or "123 bytes": for messages a person reads.
pub fn human_bytes(bytes: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(payload_len: usize) -> MessageShape<'static> {
        MessageShape {
            payload_len,
            headers: vec![],
            device_id: "",
            dedup_id: "",
        }
    }

    #[test]
    fn message_at_the_limit_passes_and_one_byte_over_fails() {
        let plan = Plan::default();
        assert!(plan.check_batch(&[shape(256 * 1024)]).is_ok());
        let err = plan.check_batch(&[shape(256 * 1024 + 1)]).unwrap_err();
        assert!(err.to_string().contains("256 KiB"), "{err}");
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        let plan = Plan::default();
        assert!(plan.check_batch(&[]).is_err());
        let many: Vec<_> = (0..1001).map(|_| shape(1)).collect();
        assert!(plan
            .check_batch(&many)
            .unwrap_err()
            .to_string()
            .contains("1000"));
        let big: Vec<_> = (0..17).map(|_| shape(256 * 1024)).collect();
        assert!(plan
            .check_batch(&big)
            .unwrap_err()
            .to_string()
            .contains("4 MiB"));
    }

    #[test]
    fn size_counts_headers_and_ids() {
        let m = MessageShape {
            payload_len: 10,
            headers: vec![("ab", "cde")],
            device_id: "imei",
            dedup_id: "d1",
        };
        assert_eq!(m.size().bytes, 10 + 5 + 4 + 2);
    }

    #[test]
    fn lock_and_expiry_ranges() {
        let plan = Plan::default();
        assert!(plan.check_lock(0).is_ok());
        assert!(plan.check_lock(10).is_ok());
        assert!(plan.check_lock(60).is_ok());
        assert!(plan.check_lock(9).is_err());
        assert!(plan.check_lock(61).is_err());
        assert!(plan.check_expiry(29).is_err());
        assert!(plan.check_expiry(30).is_ok());
        assert!(plan.check_expiry(604_800).is_ok());
        assert!(plan.check_expiry(604_801).is_err());
    }
}
