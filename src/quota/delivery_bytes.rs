//! Delivery bytes outstanding per tenant: one pool per tenant that every
//! Consume stream and Fetch of the tenant draws its byte credit from, so the
//! memory a tenant can hold in the broker (pushed but unacknowledged
//! deliveries, fetches being answered) is bounded by its plan's
//! `max_outstanding_delivery_bytes` however many streams it opens.
//!
//! A stream reserves credit before a delivery pass ([`DeliveryPool::reserve`]),
//! settles it to what the pass used ([`DeliveryPool::settle`]) and releases it
//! on ack, nack or close ([`DeliveryPool::release`]). Credit that is not there
//! is waited for: [`DeliveryPool::watch`] changes whenever credit is released.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::sync::MutexExt;

/// One tenant's pool of delivery bytes.
pub struct DeliveryPool {
    used: Mutex<u64>,
    released: watch::Sender<u64>,
}

impl DeliveryPool {
    /// An empty pool (the broker keeps one per tenant in its admission).
    pub fn new() -> Self {
        DeliveryPool {
            used: Mutex::new(0),
            released: watch::channel(0).0,
        }
    }

    /// Takes up to `want` bytes of credit under `limit`; returns how many
    /// were taken (0 when the pool is full: wait on [`Self::watch`]).
    pub fn reserve(&self, want: u64, limit: u64) -> u64 {
        let mut used = self.used.lock_unpoisoned();
        let granted = want.min(limit.saturating_sub(*used));
        *used += granted;
        granted
    }

    /// Turns a reservation of `reserved` bytes into the `used` bytes a pass
    /// actually delivered (more only for a single message larger than the
    /// credit, delivered alone).
    pub fn settle(&self, reserved: u64, used: u64) {
        if used >= reserved {
            *self.used.lock_unpoisoned() += used - reserved;
        } else {
            self.release(reserved - used);
        }
    }

    /// Gives back `bytes` of credit (acked, nacked, or the stream closed)
    /// and wakes whoever waits for credit.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        {
            let mut used = self.used.lock_unpoisoned();
            *used = used.saturating_sub(bytes);
        }
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Bytes outstanding now.
    pub fn used(&self) -> u64 {
        *self.used.lock_unpoisoned()
    }

    /// A receiver that changes whenever credit is released.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
    }

    /// Credit left under `limit`.
    pub fn free(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.used())
    }

    /// Waits until more than `than` bytes of credit are free under `limit`.
    /// A stream held back with `than` bytes of credit waits here, so credit
    /// merely borrowed and given back by another stream's pass (which leaves
    /// the pool as it was) does not wake it in a loop.
    pub async fn wait_for_more(&self, mut released: watch::Receiver<u64>, than: u64, limit: u64) {
        while self.free(limit) <= than {
            if released.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

impl Default for DeliveryPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Pools by tenant.
#[derive(Default)]
pub(super) struct DeliveryPools(DashMap<String, Arc<DeliveryPool>>);

impl DeliveryPools {
    /// The tenant's pool (created empty on first use).
    pub(super) fn of(&self, tenant: &str) -> Arc<DeliveryPool> {
        if let Some(pool) = self.0.get(tenant) {
            return pool.clone();
        }
        self.0
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(DeliveryPool::new()))
            .clone()
    }

    /// Bytes the tenant has outstanding.
    pub(super) fn used(&self, tenant: &str) -> u64 {
        self.0.get(tenant).map(|p| p.used()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_bounded_and_released() {
        let pools = DeliveryPools::default();
        let pool = pools.of("a");
        assert_eq!(pool.reserve(60, 100), 60);
        assert_eq!(pool.reserve(60, 100), 40, "only what is left");
        assert_eq!(pool.reserve(1, 100), 0, "full: wait");
        let mut rx = pool.watch();
        rx.borrow_and_update();
        pool.settle(40, 10);
        assert_eq!(pools.used("a"), 70);
        assert!(rx.has_changed().unwrap(), "a release wakes waiters");
        pool.settle(10, 15);
        assert_eq!(pools.used("a"), 75, "a lone large message goes over");
        pool.release(75);
        assert_eq!(pools.used("a"), 0);
        assert_eq!(pool.free(100), 100);
        assert_eq!(pools.used("b"), 0, "tenants are separate");
    }
}
