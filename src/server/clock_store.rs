//! The manual test clock's life outside the [`Clock`] itself: its reading is
//! restored at start-up (so a restart does not move time back) and saved,
//! together with an audit entry, on every AdvanceClock; then everything the
//! new time makes due (the [tick](super::tick)) runs before the call returns.
//! The reading itself is stored by `storage/repo/clock.rs`
//! ([`Store::manual_clock_ms`], [`WriteSet::put_manual_clock_ms`]).

use std::sync::Arc;
use std::time::Duration;

use super::tick::{Due, Ticker};
use crate::api::ClockControl;
use crate::clock::{wall_clock_ms, Clock, ClockKind};
use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteSet};
use crate::sync::BoxFuture;
use crate::tenancy::Tenancy;

/// Longest single AdvanceClock step: about 400 days.
pub const MAX_ADVANCE_MS: u64 = 400 * 24 * 3600 * 1000;

/// The clock of the configured kind: a manual one resumes at its saved
/// reading; on first start (nothing saved) it starts at `start_ms` (the
/// config's `clock_start`), else at the wall clock.
pub fn restore(
    store: &Store,
    kind: ClockKind,
    start_ms: Option<i64>,
) -> std::result::Result<Clock, StorageError> {
    Ok(match kind {
        ClockKind::System => Clock::system(),
        ClockKind::Manual => Clock::manual(
            store
                .manual_clock_ms()?
                .or(start_ms)
                .unwrap_or_else(wall_clock_ms),
        ),
    })
}

/// Moves the manual clock for the Operator service.
pub struct ClockStore {
    clock: Clock,
    store: Store,
    tenancy: Arc<Tenancy>,
    ticker: Arc<Ticker>,
}

impl ClockStore {
    /// Saves `clock`'s readings in `store`, audits through `tenancy`, and
    /// runs `ticker` after each advance.
    pub fn new(clock: Clock, store: Store, tenancy: Arc<Tenancy>, ticker: Arc<Ticker>) -> Self {
        ClockStore {
            clock,
            store,
            tenancy,
            ticker,
        }
    }

    /// Advances the manual clock by `advance_ms` (1 to [`MAX_ADVANCE_MS`]),
    /// saves and audits the new reading atomically, runs what is now due, and
    /// returns the new time. Refused unless the clock is manual.
    pub async fn advance(&self, advance_ms: u64) -> Result<i64> {
        if self.clock.kind() != ClockKind::Manual {
            return Err(Error::FailedPrecondition(
                "the clock can only be advanced when the config says clock = \"manual\"".into(),
            ));
        }
        if advance_ms == 0 || advance_ms > MAX_ADVANCE_MS {
            return Err(Error::invalid(format!(
                "advance_ms must be between 1 and {MAX_ADVANCE_MS} (400 days)"
            )));
        }
        let now = self
            .clock
            .advance(Duration::from_millis(advance_ms))
            .unwrap_or_else(|| self.clock.now_ms());
        let mut writes = WriteSet::new();
        writes.put_manual_clock_ms(now);
        self.tenancy.audit(
            &mut writes,
            "operator",
            "clock.advance",
            "",
            format!("advanced {advance_ms} ms to {now}"),
        )?;
        self.store.commit(writes).await?;
        // Whatever the new time makes due happens before the reply: expiry,
        // settlement of ended days, arrears.
        self.ticker.run(Due::Everything).await?;
        Ok(now)
    }
}

impl ClockControl for ClockStore {
    fn advance(&self, advance_ms: u64) -> BoxFuture<'_, Result<i64>> {
        Box::pin(ClockStore::advance(self, advance_ms))
    }

    fn read(&self) -> (i64, ClockKind) {
        (self.clock.now_ms(), self.clock.kind())
    }
}
