//! The broker's one clock. Publish times, lock deadlines, expiry, dedup windows
//! and (later) settlement all read [`Clock::now_ms`], so a test clock moves all
//! of them together.
//!
//! `system` follows the wall clock. `manual` (only when the config says so)
//! starts at the time it was last left at (or, on first start, the config's
//! `clock_start`, else the wall clock) and moves only through
//! [`Clock::advance`], like Stripe's test clocks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Which kind of clock the broker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// Wall-clock time (the default).
    System,
    /// A test clock moved forward by `Operator.AdvanceClock`.
    Manual,
}

/// Milliseconds since the Unix epoch (UTC) on the wall clock.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses an RFC 3339 instant (`2026-12-01T00:00:00Z`, any offset) into
/// Unix ms, for the config's `clock_start`.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Unix ms as an RFC 3339 instant in UTC (`2026-12-01T00:00:00.000Z`).
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{unix_ms} ms"))
}

/// A cheaply clonable handle to the broker's clock.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    kind: ClockKind,
    /// Origin of the monotonic reading of a system clock.
    started: std::time::Instant,
    manual_now_ms: AtomicI64,
    /// Bumped on every manual advance so waiters re-check their deadlines.
    advanced: watch::Sender<i64>,
}

impl Clock {
    /// A wall clock.
    pub fn system() -> Self {
        Self::new(ClockKind::System, 0)
    }

    /// A manual clock that reads `start_ms` until advanced.
    pub fn manual(start_ms: i64) -> Self {
        Self::new(ClockKind::Manual, start_ms)
    }

    fn new(kind: ClockKind, start_ms: i64) -> Self {
        let (advanced, _) = watch::channel(start_ms);
        Clock {
            inner: Arc::new(ClockInner {
                kind,
                started: std::time::Instant::now(),
                manual_now_ms: AtomicI64::new(start_ms),
                advanced,
            }),
        }
    }

    /// Which kind of clock this is.
    pub fn kind(&self) -> ClockKind {
        self.inner.kind
    }

    /// Now, in milliseconds since the Unix epoch (UTC).
    pub fn now_ms(&self) -> i64 {
        match self.inner.kind {
            ClockKind::System => wall_clock_ms(),
            ClockKind::Manual => self.inner.manual_now_ms.load(Ordering::SeqCst),
        }
    }

    /// A reading that never goes backwards, for measuring intervals (rate
    /// limits): time since start on the system clock, the manual reading on a
    /// manual clock.
    pub fn monotonic(&self) -> Duration {
        match self.inner.kind {
            ClockKind::System => self.inner.started.elapsed(),
            ClockKind::Manual => Duration::from_millis(self.now_ms().max(0) as u64),
        }
    }

    /// Moves a manual clock forward; returns the new time, or `None` on a
    /// system clock (which cannot be moved).
    pub fn advance(&self, by: Duration) -> Option<i64> {
        if self.inner.kind != ClockKind::Manual {
            return None;
        }
        let by_ms = by.as_millis().min(i64::MAX as u128 / 2) as i64;
        let now = self.inner.manual_now_ms.fetch_add(by_ms, Ordering::SeqCst) + by_ms;
        self.inner.advanced.send_replace(now);
        Some(now)
    }

    /// Resolves once the clock reads at least `deadline_ms`. On the system
    /// clock this sleeps; on the manual clock it waits for advances.
    pub async fn wait_until(&self, deadline_ms: i64) {
        match self.inner.kind {
            ClockKind::System => {
                let now = wall_clock_ms();
                if deadline_ms > now {
                    tokio::time::sleep(Duration::from_millis((deadline_ms - now) as u64)).await;
                }
            }
            ClockKind::Manual => {
                let mut rx = self.inner.advanced.subscribe();
                while self.now_ms() < deadline_ms {
                    if rx.changed().await.is_err() {
                        // The clock is gone; nothing will ever advance it.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(clock.advance(Duration::from_secs(2)), Some(3_000));
        assert_eq!(clock.now_ms(), 3_000);
    }

    #[test]
    fn rfc3339_instants_round_trip_in_utc() {
        let ms = parse_rfc3339_ms("2026-12-01T08:00:00+08:00").unwrap();
        assert_eq!(format_rfc3339_ms(ms), "2026-12-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339_ms("2026-12-01"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn system_clock_cannot_be_advanced() {
        assert_eq!(Clock::system().advance(Duration::from_secs(1)), None);
    }

    #[tokio::test]
    async fn manual_wait_until_resolves_on_advance() {
        let clock = Clock::manual(0);
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.wait_until(5_000).await }
        });
        clock.advance(Duration::from_millis(4_999));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter should finish after the deadline is reached")
            .expect("waiter task");
    }
}
