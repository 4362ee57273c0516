//! Fetch: the long-poll that waits for something to deliver, and the wait
//! it shares with the Consume stream.

use std::time::Duration;

use tokio::sync::watch;

use super::Delivered;
use crate::broker::topic::SetCache;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::error::Result;
use crate::tenancy::TenantKey;

impl Broker {
    /// Long-poll: waits up to `max_wait` (real time) for up to `max_messages`.
    pub async fn fetch(
        &self,
        key: &TenantKey,
        topic_name: &str,
        subscription: &str,
        max_messages: usize,
        max_wait: Duration,
    ) -> Result<Vec<Delivered>> {
        self.check_consume(key, topic_name)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, subscription)?;
        let give_up = tokio::time::Instant::now() + max_wait;
        let mut cache = SetCache::default();
        loop {
            let topic_rx = topic.watch();
            let sub_rx = sub.watch();
            let status_rx = self.tenancy.watch_status();
            self.tenancy.check_data_plane(&key.tenant)?;
            let pass = self
                .deliver(&topic, &sub, max_messages, FETCH_MAX_BYTES, &mut cache)
                .await?;
            if !pass.delivered.is_empty() {
                return Ok(pass.delivered);
            }
            let woke = wait_for_work(
                topic_rx,
                sub_rx,
                status_rx,
                self.clock.clone(),
                pass.next_deadline,
            );
            if tokio::time::timeout_at(give_up, woke).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

/// Most payload bytes one Fetch claims (one message may go over): below a
/// stock client's 4 MiB response limit by more than a message of plan
/// `standard` (256 KiB) and its framing, so what a Fetch claims fits its one
/// response and is rarely handed back (see `api::pack`).
const FETCH_MAX_BYTES: u64 = 3 * 1024 * 1024 + 512 * 1024;

/// Resolves when new messages are durable, the subscription changed, or the
/// next pending deadline is reached.
pub(super) async fn wait_for_work(
    mut topic_rx: watch::Receiver<u64>,
    mut sub_rx: watch::Receiver<u64>,
    mut status_rx: watch::Receiver<u64>,
    clock: Clock,
    next_deadline: Option<i64>,
) {
    let deadline = async {
        match next_deadline {
            Some(at) => clock.wait_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = topic_rx.changed() => {}
        _ = sub_rx.changed() => {}
        _ = status_rx.changed() => {}
        _ = deadline => {}
    }
}
