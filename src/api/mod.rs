//! The gRPC front end: one module per service, each a thin adapter that
//! converts wire types, calls the broker domain, and maps errors through
//! [`status`]. Authentication is an interceptor ([`auth`]) applied once per
//! service.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod broker;
pub mod operator;
pub mod rpc_metrics;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;

use crate::billing::Billing;
use crate::broker::{Broker, Delivered};
use crate::proto::v1 as pb;
use crate::storage::records::StoredMessage;
use crate::storage::Store;

/// What every service handler needs.
#[derive(Clone)]
pub struct ApiState {
    /// The broker domain.
    pub broker: Arc<Broker>,
    /// Settlement, ledger, accounts.
    pub billing: Arc<Billing>,
    /// The store (for the clock record).
    pub store: Store,
    /// Turns true when the server begins to shut down; long streams end.
    pub shutdown: watch::Receiver<bool>,
    /// gRPC health statuses (NOT_SERVING in maintenance and at shutdown).
    pub health: tonic_health::server::HealthReporter,
}

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
