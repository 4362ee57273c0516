//! Wire <-> domain conversions, in one place for every service: `From`
//! impls where a conversion cannot fail, functions returning
//! [`Error::InvalidArgument`] where the wire can carry a value the domain has
//! no meaning for (unknown enum numbers, out-of-range limits).

use crate::billing::ledger::LedgerEntry;
use crate::billing::pricing::milli_gib_hours;
use crate::billing::{AccountView, Statement, StatementDay, UsageLine};
use crate::broker::admin::{
    NewSubscription, NewTopic, QuotaUse, StartAt, SubscriptionUpdate, SubscriptionView,
    TopicUpdate, TopicView,
};
use crate::broker::delivery::SeekTarget;
use crate::broker::topic::OverflowPolicy;
use crate::broker::{Delivered, Message, ProduceOutcome};
use crate::error::{Error, Result};
use crate::metering::{Calendar, Dimension};
use crate::proto::v1 as pb;
use crate::tenancy::{
    ApiKey, AuditEvent, DeviceBinding, NewTenant, Scope, SuspendReason, Tenant, TenantUpdate,
};

/// Most items one page of a listing may ask for.
const MAX_PAGE: u32 = 1000;

/// A listing's page size: `default` when the request leaves it 0, refused
/// above 1000 (`MAX_PAGE`).
pub fn page_limit(limit: u32, default: usize) -> Result<usize> {
    match limit {
        0 => Ok(default),
        n if n > MAX_PAGE => Err(Error::invalid(format!("limit may be at most {MAX_PAGE}"))),
        n => Ok(n as usize),
    }
}

/// `value` of the field `what`, refused above `max`.
pub fn at_most(what: &str, value: u32, max: u32) -> Result<u32> {
    if value > max {
        return Err(Error::invalid(format!(
            "{what} {value} is out of range: at most {max}"
        )));
    }
    Ok(value)
}

/// Refuses a free-text field (`what`) longer than 200 bytes.
pub fn short_text(what: &str, text: &str) -> Result<()> {
    if text.len() > 200 {
        return Err(Error::invalid(format!("{what} may be at most 200 bytes")));
    }
    Ok(())
}

/// The suspension reason a SuspendTenant request names.
pub fn suspend_reason(reason: i32) -> Result<SuspendReason> {
    match pb::SuspensionReason::try_from(reason) {
        Ok(pb::SuspensionReason::Abuse) => Ok(SuspendReason::Abuse),
        Ok(pb::SuspensionReason::Operator) => Ok(SuspendReason::Operator),
        Ok(pb::SuspensionReason::Arrears) => Ok(SuspendReason::Arrears),
        _ => Err(Error::invalid(format!(
            "unknown suspension reason {reason}: use ABUSE, OPERATOR or ARREARS"
        ))),
    }
}

/// Where a CreateSubscription request starts (unspecified is earliest).
pub fn start_at(start: i32) -> Result<StartAt> {
    match pb::StartPosition::try_from(start) {
        Ok(pb::StartPosition::Unspecified | pb::StartPosition::Earliest) => Ok(StartAt::Earliest),
        Ok(pb::StartPosition::Latest) => Ok(StartAt::Latest),
        Err(_) => Err(Error::invalid(format!(
            "unknown start position {start}: use EARLIEST or LATEST"
        ))),
    }
}

/// Where a Seek request moves the cursor.
pub fn seek_target(req: &pb::SeekRequest) -> Result<SeekTarget> {
    match pb::SeekPosition::try_from(req.position) {
        Ok(pb::SeekPosition::Earliest) => Ok(SeekTarget::Earliest),
        Ok(pb::SeekPosition::Latest) => Ok(SeekTarget::Latest),
        Ok(pb::SeekPosition::Offset) => Ok(SeekTarget::Offset(req.offset)),
        Ok(pb::SeekPosition::Timestamp) => Ok(SeekTarget::Timestamp(req.timestamp_unix_ms)),
        _ => Err(Error::invalid(format!(
            "unknown seek position {}: use EARLIEST, LATEST, OFFSET or TIMESTAMP",
            req.position
        ))),
    }
}

/// The scopes a CreateApiKey request grants.
pub fn scopes(scopes: &[i32]) -> Result<Vec<Scope>> {
    scopes
        .iter()
        .map(|s| {
            Scope::from_i32(*s).ok_or_else(|| {
                Error::invalid(format!(
                    "unknown scope {s}: use PRODUCE (1), CONSUME (2) or MANAGE (3)"
                ))
            })
        })
        .collect()
}

impl From<pb::Message> for Message {
    /// Fields move, nothing is copied.
    fn from(m: pb::Message) -> Self {
        Message {
            payload: m.payload,
            headers: m.headers,
            device_id: m.device_id,
            dedup_id: m.dedup_id,
        }
    }
}

impl From<Message> for pb::Message {
    fn from(m: Message) -> Self {
        pb::Message {
            payload: m.payload,
            headers: m.headers,
            device_id: m.device_id,
            dedup_id: m.dedup_id,
        }
    }
}

impl From<Delivered> for pb::Delivery {
    fn from(d: Delivered) -> Self {
        pb::Delivery {
            offset: d.offset,
            message: Some(d.message.into()),
            publish_time_unix_ms: d.publish_ms,
            delivery_attempt: d.attempt,
        }
    }
}

impl From<ProduceOutcome> for pb::ProduceResponse {
    fn from(outcome: ProduceOutcome) -> Self {
        pb::ProduceResponse {
            results: outcome
                .results
                .into_iter()
                .map(|r| pb::ProduceResult {
                    offset: r.offset,
                    duplicate: r.duplicate,
                    units: r.units,
                })
                .collect(),
            units: outcome.units,
        }
    }
}

impl From<pb::TopicConfig> for NewTopic {
    fn from(c: pb::TopicConfig) -> Self {
        NewTopic {
            expiry_seconds: c.message_expiry_seconds,
            max_bytes: c.max_bytes,
            overflow_policy: c.overflow_policy,
            dedup_window_seconds: c.dedup_window_seconds,
        }
    }
}

impl From<&pb::UpdateTopicRequest> for TopicUpdate {
    fn from(req: &pb::UpdateTopicRequest) -> Self {
        TopicUpdate {
            expiry_seconds: req.message_expiry_seconds,
            max_bytes: req.max_bytes,
            overflow_policy: req.overflow_policy,
            dedup_window_seconds: req.dedup_window_seconds,
        }
    }
}

impl From<OverflowPolicy> for pb::OverflowPolicy {
    fn from(policy: OverflowPolicy) -> Self {
        match policy {
            OverflowPolicy::ReclaimOldest => pb::OverflowPolicy::ReclaimOldest,
            OverflowPolicy::RefuseProduce => pb::OverflowPolicy::RefuseProduce,
        }
    }
}

impl From<TopicView> for pb::Topic {
    fn from(view: TopicView) -> Self {
        let r = view.settings;
        let s = view.stats;
        pb::Topic {
            name: r.name,
            config: Some(pb::TopicConfig {
                message_expiry_seconds: r.expiry_seconds,
                max_bytes: r.max_bytes,
                overflow_policy: pb::OverflowPolicy::from(r.overflow_policy).into(),
                dedup_window_seconds: r.dedup_window_seconds,
            }),
            create_time_unix_ms: r.created_ms,
            stats: Some(pb::TopicStats {
                messages: s.messages,
                bytes: s.bytes,
                first_offset: s.first_offset,
                next_offset: s.next_offset,
                expired_messages: s.expired_messages,
                reclaimed_messages: s.reclaimed_messages,
                oldest_message_age_ms: s.oldest_message_age_ms,
                corrupt_messages: s.corrupt_messages,
            }),
        }
    }
}

impl From<pb::SubscriptionConfig> for NewSubscription {
    fn from(c: pb::SubscriptionConfig) -> Self {
        NewSubscription {
            lock_seconds: c.lock_seconds,
            max_delivery_attempts: c.max_delivery_attempts,
            dead_letter_topic: c.dead_letter_topic,
        }
    }
}

impl From<&pb::UpdateSubscriptionRequest> for SubscriptionUpdate {
    fn from(req: &pb::UpdateSubscriptionRequest) -> Self {
        SubscriptionUpdate {
            lock_seconds: req.lock_seconds,
            max_delivery_attempts: req.max_delivery_attempts,
            dead_letter_topic: req.dead_letter_topic.clone(),
        }
    }
}

impl From<SubscriptionView> for pb::Subscription {
    fn from(view: SubscriptionView) -> Self {
        let r = view.settings;
        let s = view.stats;
        pb::Subscription {
            topic: view.topic,
            name: r.name,
            config: Some(pb::SubscriptionConfig {
                lock_seconds: r.lock_seconds,
                max_delivery_attempts: r.max_delivery_attempts,
                dead_letter_topic: r.dead_letter_topic,
            }),
            create_time_unix_ms: r.created_ms,
            stats: Some(pb::SubscriptionStats {
                backlog: s.backlog,
                in_flight: s.in_flight,
                next_offset: s.next_offset,
                dead_lettered: s.dead_lettered,
                oldest_unacked_age_ms: s.oldest_unacked_age_ms,
            }),
        }
    }
}

impl From<QuotaUse> for pb::QuotaItem {
    fn from(q: QuotaUse) -> Self {
        pb::QuotaItem {
            name: q.name.to_string(),
            limit: q.limit,
            used: q.used,
            unit: q.unit.to_string(),
        }
    }
}

impl From<UsageLine> for pb::UsageLine {
    fn from(line: UsageLine) -> Self {
        let (dimension, name) = match line.dimension {
            Dimension::Total => ("total", String::new()),
            Dimension::Topic(t) => ("topic", t),
            Dimension::Device(d) => ("device", d),
        };
        let u = line.usage;
        pb::UsageLine {
            day: line.day,
            dimension: dimension.into(),
            name,
            message_units: u.message_units(),
            produced_units: u.produced_units,
            delivered_units: u.delivered_units,
            redelivered_units: u.redelivered_units,
            produced_messages: u.produced_messages,
            delivered_messages: u.delivered_messages,
            storage_milli_gib_hours: milli_gib_hours(u.storage_byte_ms),
            topic_days: line.topic_days,
        }
    }
}

impl From<pb::CreateTenantRequest> for NewTenant {
    fn from(req: pb::CreateTenantRequest) -> Self {
        NewTenant {
            id: req.id,
            display_name: req.display_name,
            contact_email: req.contact_email,
            plan: req.plan,
        }
    }
}

/// The tenant an UpdateTenant request names, and what it changes.
pub fn tenant_update(req: pb::UpdateTenantRequest) -> (String, TenantUpdate) {
    let update = TenantUpdate {
        display_name: req.display_name,
        contact_email: req.contact_email,
        plan: req.plan,
        set_overrides: req.set_quota_overrides,
        clear_overrides: req.clear_quota_overrides,
    };
    (req.id, update)
}

impl From<Tenant> for pb::Tenant {
    fn from(t: Tenant) -> Self {
        pb::Tenant {
            id: t.id,
            display_name: t.display_name,
            contact_email: t.contact_email,
            plan: t.plan,
            status: t.status as i32,
            create_time_unix_ms: t.created_ms,
            quota_overrides: t.quota_overrides,
            status_reason: t.status_reason,
        }
    }
}

impl From<DeviceBinding> for pb::DeviceBinding {
    fn from(d: DeviceBinding) -> Self {
        pb::DeviceBinding {
            device_id: d.device_id,
            tenant: d.tenant,
            bound_time_unix_ms: d.bound_ms,
        }
    }
}

impl From<ApiKey> for pb::ApiKey {
    /// Scopes go out as their wire numbers; the secret's hash never does.
    fn from(k: ApiKey) -> Self {
        pb::ApiKey {
            id: k.id,
            tenant: k.tenant,
            scopes: k.scopes.into_iter().map(|s| s as i32).collect(),
            topics: k.topics,
            description: k.description,
            create_time_unix_ms: k.created_ms,
            revoked: k.revoked,
        }
    }
}

impl From<AuditEvent> for pb::AuditEvent {
    fn from(e: AuditEvent) -> Self {
        pb::AuditEvent {
            sequence: e.sequence,
            time_unix_ms: e.time_ms,
            actor: e.actor,
            action: e.action,
            tenant: e.tenant,
            detail: e.detail,
        }
    }
}

impl From<LedgerEntry> for pb::LedgerEntry {
    fn from(e: LedgerEntry) -> Self {
        pb::LedgerEntry {
            sequence: e.sequence,
            node_id: e.node_id,
            tenant: e.tenant,
            kind: e.kind,
            day: e.day,
            meter: e.meter,
            quantity: e.quantity,
            free_applied: e.free_applied,
            billable: e.billable,
            unit_price_nano_minor: e.unit_price_nano_minor,
            amount_minor: e.amount_minor,
            currency: e.currency,
            idempotency_key: e.idempotency_key,
            created_unix_ms: e.created_ms,
            due_unix_ms: e.due_ms,
            produced_units: e.produced_units,
            delivered_units: e.delivered_units,
            redelivered_units: e.redelivered_units,
            note: e.note,
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }
}

impl From<Statement> for pb::Statement {
    fn from(s: Statement) -> Self {
        let sum = |f: fn(&StatementDay) -> u64| s.days.iter().map(f).sum();
        pb::Statement {
            message_units: sum(|d| d.message_units),
            free_units_applied: sum(|d| d.free_units_applied),
            topic_days: sum(|d| d.topic_days),
            tenant: s.tenant,
            month: s.month,
            currency: s.currency,
            days: s
                .days
                .into_iter()
                .map(|d| pb::StatementDay {
                    day: d.day,
                    message_units: d.message_units,
                    free_units_applied: d.free_units_applied,
                    topic_days: d.topic_days,
                    storage_milli_gib_hours: d.storage_milli_gib_hours,
                    amount_minor: d.amount_minor,
                })
                .collect(),
            charges_minor: s.charges_minor,
            payments_minor: s.payments_minor,
            balance_minor: s.balance_minor,
            final_statement: s.final_statement.map(Into::into),
        }
    }
}

/// A tenant's account as the wire shows it (days named by `calendar`).
pub fn account_message(a: AccountView, calendar: &Calendar) -> pb::Account {
    pb::Account {
        tenant: a.tenant,
        currency: a.currency,
        charges_minor: a.charges_minor,
        payments_minor: a.payments_minor,
        balance_minor: a.balance_minor,
        oldest_unpaid_due_unix_ms: a.oldest_unpaid_due_ms.unwrap_or(0),
        status: a.status as i32,
        status_reason: a.status_reason,
        settled_through: settled_day(a.settled_through, calendar),
    }
}

/// The last settled day's name, or "" when none is.
pub fn settled_day(day: Option<i64>, calendar: &Calendar) -> String {
    day.map(|d| calendar.day_name(d)).unwrap_or_default()
}
