//! A plan: the limits a tenant's requests are held to, its rate card, and the
//! arrears policy (grace period, termination), as configured under
//! `[plans.<name>]`. A leaf: it depends on nothing in the crate but the error
//! types, so quota, tenancy, billing and config can all read it.
//!
//! Who reads what: quota checks requests against the limits
//! (`crate::quota::limits`, `crate::quota::admission`); billing prices usage
//! with [`Plan::rates`] and applies [`Plan::grace_period_days`] and
//! [`Plan::terminate_after_arrears_days`]; tenancy resolves each tenant's plan
//! with its overrides ([`resolve`]). Every field keeps its flat name because
//! config files and per-tenant overrides name fields that way.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Name of the built-in plan every tenant is on unless told otherwise.
pub const DEFAULT_PLAN: &str = "standard";

/// Bytes in a KiB.
pub const KIB: u64 = 1024;
/// Bytes in a MiB.
pub const MIB: u64 = 1024 * KIB;
/// Bytes in a GiB.
pub const GIB: u64 = 1024 * MIB;

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
    pub rates: RateCard,
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

/// Adds the built-in plan [`DEFAULT_PLAN`] (the default limits) to `plans`
/// unless they define it themselves.
pub fn add_builtin(plans: &mut BTreeMap<String, Plan>) {
    plans.entry(DEFAULT_PLAN.to_string()).or_default();
}

/// The plan `name` of `plans` with a tenant's `overrides` applied and checked;
/// INVALID_ARGUMENT naming the configured plans when there is no such plan.
pub fn resolve(
    plans: &BTreeMap<String, Plan>,
    name: &str,
    overrides: &HashMap<String, u64>,
) -> Result<Plan> {
    let plan = plans.get(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown plan '{name}'; configured plans: {}",
            plans.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    plan.with_overrides(overrides)
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

/// The largest `max_message_bytes` a plan may allow: one message and its
/// framing must fit a 4 MiB response (SPEC §2), with room for headers.
pub const MAX_MESSAGE_BYTES_ANY_PLAN: u64 = 4 * MIB - 64 * KIB;

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
        if self.max_message_bytes > MAX_MESSAGE_BYTES_ANY_PLAN {
            return Err(format!(
                "max_message_bytes may be at most {MAX_MESSAGE_BYTES_ANY_PLAN} (4 MiB - 64 KiB), \
                 so every delivery fits one response of a stock client's 4 MiB limit"
            ));
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
}

/// A plan's prices.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateCard {
    /// ISO currency code.
    pub currency: String,
    /// Price of one message unit, in billionths of a minor unit
    /// (1.20 CNY per million units = 120 fen / 1e6 = 120,000 nano-fen).
    pub message_unit_price_nano_minor: u64,
    /// Free message units per tenant per calendar month.
    pub free_message_units_per_month: u64,
    /// Price of one topic-day, in billionths of a minor unit (2.00 CNY = 200e9).
    pub topic_day_price_nano_minor: u64,
    /// Price of one milli-GiB-hour of storage, in billionths of a minor unit.
    pub storage_milli_gib_hour_price_nano_minor: u64,
}

impl Default for RateCard {
    fn default() -> Self {
        RateCard {
            currency: "CNY".into(),
            message_unit_price_nano_minor: 120_000,
            free_message_units_per_month: 20_000_000,
            topic_day_price_nano_minor: 200_000_000_000,
            storage_milli_gib_hour_price_nano_minor: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn plans_resolve_by_name_and_standard_is_built_in() {
        let mut plans = BTreeMap::new();
        add_builtin(&mut plans);
        let over: HashMap<String, u64> = [("max_topics".to_string(), 9)].into_iter().collect();
        assert_eq!(resolve(&plans, DEFAULT_PLAN, &over).unwrap().max_topics, 9);
        let err = resolve(&plans, "gold", &HashMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("configured plans: standard"),
            "{err}"
        );
        let mut custom = BTreeMap::new();
        custom.insert(
            DEFAULT_PLAN.to_string(),
            Plan {
                max_topics: 1,
                ..Plan::default()
            },
        );
        add_builtin(&mut custom);
        assert_eq!(
            custom[DEFAULT_PLAN].max_topics, 1,
            "a redefined standard is kept"
        );
    }
}
