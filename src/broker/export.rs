//! Export of all of a tenant's data as JSON Lines: its topics, subscriptions,
//! retained messages (payloads in base64) and usage counters, streamed in
//! chunks so memory stays bounded whatever the data's size.

use base64::Engine;
use serde_json::json;
use tokio::sync::mpsc;

use super::Broker;
use crate::error::Result;
use crate::metering::Dimension;
use crate::tenancy::TenantKey;

/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 1 << 20;

struct Chunker {
    buffer: Vec<u8>,
    tx: mpsc::Sender<Result<Vec<u8>>>,
}

impl Chunker {
    /// Adds one line; false when the receiver is gone.
    async fn line(&mut self, value: serde_json::Value) -> bool {
        self.buffer.extend_from_slice(value.to_string().as_bytes());
        self.buffer.push(b'\n');
        if self.buffer.len() >= CHUNK_BYTES {
            return self.flush().await;
        }
        true
    }

    async fn flush(&mut self) -> bool {
        if self.buffer.is_empty() {
            return true;
        }
        let chunk = std::mem::take(&mut self.buffer);
        self.tx.send(Ok(chunk)).await.is_ok()
    }
}

impl Broker {
    /// Streams the data `key` may see into `tx` as JSON Lines chunks: all of
    /// its tenant's, or, for a key limited to some topics, those topics, their
    /// subscriptions, messages and usage lines alone (no tenant totals, device
    /// lines or contact data). Ends with an error item if reading fails.
    pub async fn export(&self, key: &TenantKey, tx: mpsc::Sender<Result<Vec<u8>>>) {
        let mut out = Chunker {
            buffer: Vec::new(),
            tx: tx.clone(),
        };
        if let Err(e) = self.export_into(key, &mut out).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn export_into(&self, key: &TenantKey, out: &mut Chunker) -> Result<()> {
        let tenant = key.tenant.as_str();
        let record = self.tenancy.get_tenant(tenant)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut line = json!({"type": "tenant", "id": record.id, "plan": record.plan,
            "create_time_unix_ms": record.created_ms});
        if key.may_see_slice(None) {
            line["display_name"] = record.display_name.into();
            line["contact_email"] = record.contact_email.into();
        }
        if !out.line(line).await {
            return Ok(());
        }
        let mut topics = self.tenant_topics(tenant);
        topics.retain(|t| key.may_touch(&t.name));
        for topic in topics {
            let t = topic.settings();
            out.line(json!({"type": "topic", "name": t.name,
                "message_expiry_seconds": t.expiry_seconds, "max_bytes": t.max_bytes,
                "overflow_policy": t.overflow_policy.api_name(), "dedup_window_seconds": t.dedup_window_seconds,
                "create_time_unix_ms": t.created_ms}))
                .await;
            for sub in topic.subscription_list() {
                let mut s = sub.settings();
                if !key.may_touch(&s.dead_letter_topic) {
                    s.dead_letter_topic.clear();
                }
                let next_offset = sub.state.lock().await.next_offset;
                out.line(json!({"type": "subscription", "topic": t.name, "name": s.name,
                    "lock_seconds": s.lock_seconds, "max_delivery_attempts": s.max_delivery_attempts,
                    "dead_letter_topic": s.dead_letter_topic, "next_offset": next_offset,
                    "create_time_unix_ms": s.created_ms}))
                    .await;
            }
            // One message set in memory at a time.
            for item in self.retained_sets(&topic) {
                let (first, set) = item?;
                for (i, m) in set.messages.into_iter().enumerate() {
                    let alive = out
                        .line(json!({"type": "message", "topic": t.name,
                            "offset": first + i as u64,
                            "publish_time_unix_ms": set.publish_ms,
                            "payload_base64": b64.encode(&m.payload),
                            "headers": m.headers, "device_id": m.device_id,
                            "dedup_id": m.dedup_id}))
                        .await;
                    if !alive {
                        return Ok(());
                    }
                }
            }
            self.export_quarantined(&topic, out).await;
        }
        // Per-device produce usage is derived from the stored sets: fold it.
        self.fold_device_usage(tenant).await?;
        self.store.sync_counters().await?;
        let keys = self.tenancy.data_keys(tenant).ok();
        for (day, dimension, u) in self.store.usage_of(tenant, keys.as_deref())? {
            if !key.may_see_slice(dimension.topic()) {
                continue;
            }
            let (kind, name) = match dimension {
                Dimension::Total => ("total", String::new()),
                Dimension::Topic(t) => ("topic", t),
                Dimension::Device(d) => ("device", d),
            };
            out.line(json!({"type": "usage", "day": self.calendar.day_name(day),
                "dimension": kind, "name": name, "produced_units": u.produced_units,
                "delivered_units": u.delivered_units, "redelivered_units": u.redelivered_units,
                "produced_messages": u.produced_messages, "delivered_messages": u.delivered_messages,
                "storage_byte_ms": u.storage_byte_ms}))
                .await;
        }
        out.flush().await;
        Ok(())
    }
}

impl Broker {
    /// Says which of `topic`'s messages the export skipped because their set
    /// is corrupt at rest: one line per quarantined set, and a log line.
    async fn export_quarantined(&self, topic: &super::topic::Topic, out: &mut Chunker) {
        for (first, end) in topic.quarantine.ranges() {
            tracing::warn!(tenant = %topic.tenant, topic = %topic.name, first_offset = first,
                end_offset = end, "export skipped a corrupt message set");
            out.line(json!({"type": "skipped_corrupt", "topic": topic.name,
                "first_offset": first, "end_offset": end, "messages": end - first}))
                .await;
        }
    }
}
