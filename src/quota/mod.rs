//! Plans and the limits they set. This module answers "is this request within
//! the tenant's plan?" for the shape of single requests (sizes, counts, ranges);
//! the broker and control plane call it before any work is queued, so a refused
//! request changes nothing. [`admission`] holds the accumulated limits (rates,
//! streams, failed authentications).

pub mod admission;

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{Error, Result};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Hard ceiling on any plan's lock time (SPEC §1).
pub const MAX_LOCK_SECONDS_ANY_PLAN: u32 = 600;

/// A named set of quotas. The defaults are the built-in plan `standard`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Plan {
    /// Topics per tenant.
    pub max_topics: u32,
    /// Subscriptions per topic.
    pub max_subscriptions_per_topic: u32,
    /// Size of one message: payload + header keys and values + device_id + dedup_id.
    pub max_message_bytes: u64,
    /// Messages in one produce batch.
    pub max_batch_messages: u32,
    /// Sum of the message sizes of one produce batch.
    pub max_batch_bytes: u64,
    /// Shortest message expiry a topic may set.
    pub min_message_expiry_seconds: u64,
    /// Longest message expiry a topic may set.
    pub max_message_expiry_seconds: u64,
    /// Expiry of a topic that sets none.
    pub default_message_expiry_seconds: u64,
    /// Largest (and default) topic size cap.
    pub max_topic_bytes: u64,
    /// Dedup window of a topic that sets none.
    pub default_dedup_window_seconds: u64,
    /// Longest dedup window a topic may set.
    pub max_dedup_window_seconds: u64,
    /// Shortest non-zero subscription lock time.
    pub min_lock_seconds: u32,
    /// Longest subscription lock time (never above 600).
    pub max_lock_seconds: u32,
    /// Characters in a device_id.
    pub max_device_id_chars: u32,
    /// Characters in a dedup_id.
    pub max_dedup_id_chars: u32,
    /// Headers on one message.
    pub max_headers: u32,
    /// Bytes of all header keys and values of one message.
    pub max_header_bytes: u64,
    /// Retained message bytes over all of a tenant's topics.
    pub max_tenant_storage_bytes: u64,
    /// Produce rate per tenant, in billing units per second.
    pub produce_units_per_second: u32,
    /// Produce burst per tenant, in billing units.
    pub produce_burst_units: u32,
    /// Delivery rate per topic, in billing units per second (paced, no error).
    pub consume_units_per_second_per_topic: u32,
    /// Concurrent streaming RPCs per tenant.
    pub max_concurrent_streams: u32,
    /// Control-plane calls per tenant per second.
    pub control_calls_per_second: u32,
    /// Days an unpaid charge may stay unpaid before the tenant is suspended
    /// for arrears.
    pub grace_period_days: u32,
    /// Days in arrears after which the tenant is terminated (0: never).
    pub terminate_after_arrears_days: u32,
    /// Prices.
    pub rates: crate::billing::pricing::RateCard,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            max_topics: 5,
            max_subscriptions_per_topic: 5,
            max_message_bytes: 256 * KIB,
            max_batch_messages: 1000,
            max_batch_bytes: 4 * MIB,
            min_message_expiry_seconds: 30,
            max_message_expiry_seconds: 7 * 24 * 3600,
            default_message_expiry_seconds: 24 * 3600,
            max_topic_bytes: GIB,
            default_dedup_window_seconds: 120,
            max_dedup_window_seconds: 3600,
            min_lock_seconds: 10,
            max_lock_seconds: 60,
            max_device_id_chars: 64,
            max_dedup_id_chars: 128,
            max_headers: 16,
            max_header_bytes: 4 * KIB,
            max_tenant_storage_bytes: 5 * GIB,
            produce_units_per_second: 5000,
            produce_burst_units: 10_000,
            consume_units_per_second_per_topic: 5000,
            max_concurrent_streams: 64,
            control_calls_per_second: 60,
            grace_period_days: 7,
            terminate_after_arrears_days: 0,
            rates: Default::default(),
        }
    }
}

/// Lists every plan field once, with its unit, so listing limits and applying
/// per-tenant overrides by name cannot drift apart from the struct.
macro_rules! plan_limits {
    ($($field:ident: $ty:ty, $unit:literal;)*) => {
        impl Plan {
            /// Every limit as (name, value, unit), in a stable order.
            pub fn limits(&self) -> Vec<(&'static str, u64, &'static str)> {
                vec![$((stringify!($field), self.$field as u64, $unit)),*]
            }

            fn set_limit(&mut self, name: &str, value: u64) -> Result<()> {
                match name {
                    $(stringify!($field) => {
                        self.$field = <$ty>::try_from(value).map_err(|_| {
                            Error::invalid(format!("quota override {name} = {value} is too large"))
                        })?;
                        Ok(())
                    })*
                    _ => Err(Error::invalid(format!(
                        "unknown quota '{name}'; known quotas: {}",
                        [$(stringify!($field)),*].join(", ")
                    ))),
                }
            }
        }
    };
}

plan_limits! {
    max_topics: u32, "topics";
    max_subscriptions_per_topic: u32, "subscriptions";
    max_message_bytes: u64, "bytes";
    max_batch_messages: u32, "messages";
    max_batch_bytes: u64, "bytes";
    min_message_expiry_seconds: u64, "seconds";
    max_message_expiry_seconds: u64, "seconds";
    default_message_expiry_seconds: u64, "seconds";
    max_topic_bytes: u64, "bytes";
    default_dedup_window_seconds: u64, "seconds";
    max_dedup_window_seconds: u64, "seconds";
    min_lock_seconds: u32, "seconds";
    max_lock_seconds: u32, "seconds";
    max_device_id_chars: u32, "characters";
    max_dedup_id_chars: u32, "characters";
    max_headers: u32, "headers";
    max_header_bytes: u64, "bytes";
    max_tenant_storage_bytes: u64, "bytes";
    produce_units_per_second: u32, "units/s";
    produce_burst_units: u32, "units";
    consume_units_per_second_per_topic: u32, "units/s";
    max_concurrent_streams: u32, "streams";
    control_calls_per_second: u32, "calls/s";
    grace_period_days: u32, "days";
    terminate_after_arrears_days: u32, "days";
}

impl Plan {
    /// This plan with per-tenant overrides applied and checked.
    pub fn with_overrides(&self, overrides: &HashMap<String, u64>) -> Result<Plan> {
        let mut plan = self.clone();
        for (name, value) in overrides {
            plan.set_limit(name, *value)?;
        }
        plan.validate().map_err(Error::invalid)?;
        Ok(plan)
    }
}

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
    /// Checks the plan's own consistency (used by config validation).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_lock_seconds > MAX_LOCK_SECONDS_ANY_PLAN {
            return Err(format!(
                "max_lock_seconds may be at most {MAX_LOCK_SECONDS_ANY_PLAN}"
            ));
        }
        if self.min_lock_seconds == 0 || self.min_lock_seconds > self.max_lock_seconds {
            return Err("min_lock_seconds must be between 1 and max_lock_seconds".into());
        }
        if self.min_message_expiry_seconds == 0
            || self.min_message_expiry_seconds > self.max_message_expiry_seconds
            || !(self.min_message_expiry_seconds..=self.max_message_expiry_seconds)
                .contains(&self.default_message_expiry_seconds)
        {
            return Err("message expiry bounds must satisfy 0 < min <= default <= max".into());
        }
        if self.default_dedup_window_seconds == 0
            || self.default_dedup_window_seconds > self.max_dedup_window_seconds
        {
            return Err("dedup window must satisfy 0 < default <= max".into());
        }
        if self.max_batch_messages == 0 || self.max_batch_bytes == 0 || self.max_message_bytes == 0
        {
            return Err("batch and message limits must be positive".into());
        }
        if self.produce_units_per_second == 0
            || self.produce_burst_units == 0
            || self.consume_units_per_second_per_topic == 0
            || self.control_calls_per_second == 0
        {
            return Err("rates and bursts must be positive".into());
        }
        Ok(())
    }

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
    fn overrides_apply_by_name_and_are_checked() {
        let plan = Plan::default();
        let over: HashMap<String, u64> = [("max_topics".to_string(), 50)].into_iter().collect();
        assert_eq!(plan.with_overrides(&over).unwrap().max_topics, 50);
        let unknown: HashMap<String, u64> = [("max_topicz".to_string(), 1)].into_iter().collect();
        assert!(plan.with_overrides(&unknown).is_err());
        let bad: HashMap<String, u64> = [("max_lock_seconds".to_string(), 601)]
            .into_iter()
            .collect();
        assert!(plan.with_overrides(&bad).is_err());
        assert!(plan
            .limits()
            .iter()
            .any(|(n, v, _)| *n == "max_topics" && *v == 5));
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
