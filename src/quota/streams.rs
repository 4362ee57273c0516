//! Concurrent-stream slots: a count of open streams per tenant, and the
//! permit an open stream holds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Held by an open stream; dropping it frees the tenant's stream slot.
pub struct StreamPermit {
    open: Arc<AtomicU32>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open streams by tenant.
#[derive(Default)]
pub(super) struct StreamSlots(DashMap<String, Arc<AtomicU32>>);

impl StreamSlots {
    /// Takes one of the tenant's `limit` slots; `None` when all are in use.
    pub(super) fn open(&self, tenant: &str, limit: u32) -> Option<StreamPermit> {
        let open = self
            .0
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(AtomicU32::new(0)))
            .clone();
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()?;
        Some(StreamPermit { open })
    }

    /// Streams the tenant has open.
    pub(super) fn count(&self, tenant: &str) -> u64 {
        self.0
            .get(tenant)
            .map(|n| n.load(Ordering::SeqCst) as u64)
            .unwrap_or(0)
    }
}
