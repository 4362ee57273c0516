//! Metering: how usage is counted. A message event (one stored message, one
//! delivery) is billed in units of `max(1, ceil(bytes / 1024))`, where bytes
//! is the message's counted size (payload + headers + device_id + dedup_id).

/// Billing units of one message event of `bytes` counted bytes.
pub fn units_for_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_published_rule() {
        assert_eq!(units_for_bytes(0), 1);
        assert_eq!(units_for_bytes(512), 1);
        assert_eq!(units_for_bytes(1024), 1);
        assert_eq!(units_for_bytes(1025), 2);
        // A 1.5 KiB message produced and consumed once: 2 + 2 = 4 units.
        assert_eq!(2 * units_for_bytes(1536), 4);
        // A 0.5 KiB message produced once and consumed twice: 3 units.
        assert_eq!(3 * units_for_bytes(512), 3);
    }
}
