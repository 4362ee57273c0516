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
        let room = Room::needed(topic, log, bytes).inspect_err(|e| {
            if matches!(e, Error::ResourceExhausted { .. }) {
                self.count_refusal("topic_full", tenant);
            }
        })?;
        let tenant_bytes = topic.tenant_bytes() - room.freed.min(topic.tenant_bytes());
        if tenant_bytes + bytes > plan.max_tenant_storage_bytes {
            self.count_refusal("tenant_storage", tenant);
            return Err(Error::exhausted(format!(
                "tenant storage quota: the plan allows {} bytes ({}) of retained messages and \
                 {tenant_bytes} are in use; this batch needs {bytes} more",
                plan.max_tenant_storage_bytes,
                human_bytes(plan.max_tenant_storage_bytes)
            )));
        }
        self.admission.admit_produce(tenant, plan, units)?;
        Ok(room)
    }
}
