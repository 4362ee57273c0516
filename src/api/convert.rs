//! Wire <-> domain conversions shared by the services.

use crate::billing::ledger::LedgerEntry;
use crate::broker::admin::{SubscriptionView, TopicView};
use crate::broker::{Delivered, ProduceOutcome};
use crate::proto::v1 as pb;
use crate::storage::records::{ApiKeyRecord, DeviceRecord, StoredMessage, TenantRecord};

/// Wire message to stored message (fields move, nothing is copied).
pub fn stored_message(m: pb::Message) -> StoredMessage {
    StoredMessage {
        payload: m.payload,
        headers: m.headers,
        device_id: m.device_id,
        dedup_id: m.dedup_id,
    }
}

/// Delivered message to wire delivery.
pub fn delivery(d: Delivered) -> pb::Delivery {
    pb::Delivery {
        offset: d.offset,
        message: Some(pb::Message {
            payload: d.message.payload,
            headers: d.message.headers,
            device_id: d.message.device_id,
            dedup_id: d.message.dedup_id,
        }),
        publish_time_unix_ms: d.publish_ms,
        delivery_attempt: d.attempt,
    }
}

pub fn produce_response(outcome: ProduceOutcome) -> pb::ProduceResponse {
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

pub fn topic_message(view: TopicView) -> pb::Topic {
    let r = view.record;
    let s = view.stats;
    pb::Topic {
        name: r.name,
        config: Some(pb::TopicConfig {
            message_expiry_seconds: r.expiry_seconds,
            max_bytes: r.max_bytes,
            overflow_policy: r.overflow_policy,
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
        }),
    }
}

pub fn subscription_message(view: SubscriptionView) -> pb::Subscription {
    let r = view.record;
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

pub fn tenant_message(t: TenantRecord) -> pb::Tenant {
    pb::Tenant {
        id: t.id,
        display_name: t.display_name,
        contact_email: t.contact_email,
        plan: t.plan,
        status: t.status,
        create_time_unix_ms: t.created_ms,
        quota_overrides: t.quota_overrides,
        status_reason: t.status_reason,
    }
}

pub fn device_message(d: DeviceRecord) -> pb::DeviceBinding {
    pb::DeviceBinding {
        device_id: d.device_id,
        tenant: d.tenant,
        bound_time_unix_ms: d.bound_ms,
    }
}

pub fn key_message(k: ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        tenant: k.tenant,
        scopes: k.scopes,
        topics: k.topics,
        description: k.description,
        create_time_unix_ms: k.created_ms,
        revoked: k.revoked,
    }
}

/// A stored ledger entry as the wire shows it.
pub fn ledger_message(e: LedgerEntry) -> pb::LedgerEntry {
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

/// The wire entry back to the stored form (for verification by clients).
pub fn ledger_entry(e: &pb::LedgerEntry) -> LedgerEntry {
    LedgerEntry {
        sequence: e.sequence,
        node_id: e.node_id.clone(),
        tenant: e.tenant.clone(),
        kind: e.kind.clone(),
        day: e.day.clone(),
        meter: e.meter.clone(),
        quantity: e.quantity,
        free_applied: e.free_applied,
        billable: e.billable,
        unit_price_nano_minor: e.unit_price_nano_minor,
        amount_minor: e.amount_minor,
        currency: e.currency.clone(),
        idempotency_key: e.idempotency_key.clone(),
        created_ms: e.created_unix_ms,
        due_ms: e.due_unix_ms,
        produced_units: e.produced_units,
        delivered_units: e.delivered_units,
        redelivered_units: e.redelivered_units,
        note: e.note.clone(),
        prev_hash: hex::decode(&e.prev_hash).unwrap_or_default(),
        hash: hex::decode(&e.hash).unwrap_or_default(),
    }
}
