//! Tenant self-service over topics and subscriptions: create, read, list,
//! update, delete, with the plan's ranges and counts checked first so a
//! refused request changes nothing.
//!
//! - `topics`: topic management (and erasing a tenant's topics).
//! - `subscriptions`: subscription management.
//! - `transfer`: a tenant's topics read out for a move, and rebuilt on the target.
//! - `stats`: the live figures of topics and subscriptions, and GetQuota.

mod stats;
mod subscriptions;
mod topics;
mod transfer;

pub use stats::{QuotaUse, SubscriptionStats, SubscriptionView, TopicStats, TopicView};
pub use subscriptions::{NewSubscription, StartAt, SubscriptionUpdate};
pub use topics::{NewTopic, TopicUpdate};
pub use transfer::Imported;

use std::sync::Arc;

use super::Broker;
use crate::error::Result;
use crate::quota::Plan;
use crate::tenancy::TenantKey;

impl Broker {
    /// Spends one control-plane call of the tenant's rate; returns the
    /// tenant's plan. (The manage scope and the topic allow-list were checked
    /// at the door, `tenancy::access`.)
    fn check_manage(&self, key: &TenantKey) -> Result<Arc<Plan>> {
        self.tenancy.refuse_moving(&key.tenant)?;
        let plan = self.tenancy.plan_of(&key.tenant);
        self.admission.admit_control(&key.tenant, &plan)?;
        Ok(plan)
    }
}
