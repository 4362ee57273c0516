//! The produce's policy checks, in the order they run. A refused batch
//! changes nothing. (These are the checks a single admission call is meant
//! to gather; until then they live here, together.)

use std::sync::Arc;

use super::Room;
use crate::broker::topic::{Topic, TopicLog};
use crate::broker::{Broker, Message};
use crate::error::{Error, Result};
use crate::quota::{human_bytes, MessageShape, Plan};
use crate::tenancy::TenantKey;

impl Broker {
    /// Checks that the key's tenant may produce now (its scope and topic
    /// allow-list were checked at the door, `tenancy::access`), and
    /// every message against the plan (sizes, headers, ids) and the tenant's
    /// devices. Returns the plan and each message's counted bytes.
    pub(super) fn admit_batch(
        &self,
        key: &TenantKey,
        messages: &[Message],
    ) -> Result<(Arc<Plan>, Vec<u64>)> {
        self.tenancy.check_data_plane(&key.tenant)?;
        self.refuse_when_disk_low(&key.tenant)?;
        let plan = self.tenancy.plan_of(&key.tenant);
        let shapes: Vec<MessageShape<'_>> = messages
            .iter()
            .map(|m| MessageShape {
                payload_len: m.payload.len(),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                device_id: &m.device_id,
                dedup_id: &m.dedup_id,
            })
            .collect();
        let sizes = plan.check_batch(&shapes)?;
        drop(shapes);
        for message in messages {
            self.tenancy.check_device(&key.tenant, &message.device_id)?;
        }
        Ok((plan, sizes.into_iter().map(|size| size.bytes).collect()))
    }

    /// Checks that `bytes` of new messages fit: the topic's size cap (making
    /// room by its overflow policy), then the tenant's storage quota; and
    /// spends their `units` of the tenant's produce rate, last, so only a
    /// batch that will be stored spends rate. Returns the room to append to.
    pub(super) fn admit_storage(
        &self,
        tenant: &str,
        plan: &Plan,
        topic: &Topic,
        log: &TopicLog,
        bytes: u64,
        units: u64,
    ) -> Result<Room> {
        let room = self.room_for(plan, topic, log, bytes).map_err(|refusal| {
            if let Some(kind) = refusal.counted_as {
                self.count_refusal(kind, tenant);
            }
            refusal.error
        })?;
        self.admission.admit_produce(tenant, plan, units)?;
        Ok(room)
    }

    /// The storage half of [`Broker::admit_storage`], changing and counting
    /// nothing: the room for `bytes` under the topic's size cap and the
    /// tenant's storage quota. Produce combining asks it for a whole set.
    pub(super) fn room_for(
        &self,
        plan: &Plan,
        topic: &Topic,
        log: &TopicLog,
        bytes: u64,
    ) -> Result<Room, StorageRefusal> {
        let room = Room::needed(topic, log, bytes).map_err(|error| StorageRefusal {
            counted_as: matches!(error, Error::ResourceExhausted { .. }).then_some("topic_full"),
            error,
        })?;
        let tenant_bytes = topic.tenant_bytes() - room.freed.min(topic.tenant_bytes());
        if tenant_bytes + bytes > plan.max_tenant_storage_bytes {
            return Err(StorageRefusal {
                counted_as: Some("tenant_storage"),
                error: Error::exhausted(format!(
                    "tenant storage quota: the plan allows {} bytes ({}) of retained messages \
                     and {tenant_bytes} are in use; this batch needs {bytes} more",
                    plan.max_tenant_storage_bytes,
                    human_bytes(plan.max_tenant_storage_bytes)
                )),
            });
        }
        Ok(room)
    }
}

/// Why new messages do not fit, and the refusal counter it counts under.
pub(super) struct StorageRefusal {
    /// The kind of `tallyq_quota_refusals_total` (none: a batch larger than
    /// the topic's cap is bad input, not a quota).
    counted_as: Option<&'static str>,
    /// What the producer is told.
    error: Error,
}
