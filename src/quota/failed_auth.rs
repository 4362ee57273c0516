//! Failed authentications (SPEC §4), counted per source address and per
//! tenant the credential claims, so one tenant's brute force blocks neither
//! the operator nor the other tenants behind the same address (a proxy).
//!
//! A window opens at a source's first failure and lasts `window` (a minute)
//! of WALL time: the broker's manual test clock cannot freeze or skip it.
//! The first `limit` failures of a window are answered as wrong credentials;
//! the next one and every request of that source and claim after it are
//! refused until the window ends.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// The tenant a credential names by its `tq_<tenant>_` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claim {
    /// An existing tenant of this broker.
    Tenant(String),
    /// A well-formed prefix naming no tenant of this broker (all such count
    /// together, so made-up names cannot grow the table).
    UnknownTenant,
    /// No tenant prefix: operator, billing-reader or malformed credentials.
    NoTenant,
}

impl Claim {
    /// The tenant, if the claim names one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Claim::Tenant(t) => Some(t),
            Claim::UnknownTenant | Claim::NoTenant => None,
        }
    }
}

/// One source's failures in its current window.
#[derive(Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

/// Failures by (source address, claim).
pub(super) struct FailedAuths {
    limit: u32,
    window: Duration,
    counts: DashMap<(IpAddr, Claim), Window>,
}

impl FailedAuths {
    /// At most `limit` failures a source and claim per `window`.
    pub(super) fn new(limit: u32, window: Duration) -> Self {
        FailedAuths {
            limit,
            window,
            counts: DashMap::new(),
        }
    }

    /// The configured limit.
    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    /// The configured window.
    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// How long the source must still wait, when it is blocked.
    pub(super) fn blocked_for(&self, address: IpAddr, claim: &Claim) -> Option<Duration> {
        let now = Instant::now();
        let window = *self.counts.get(&(address, claim.clone()))?;
        self.wait(window, now)
    }

    /// Counts one failure; says how long the source is now blocked for when
    /// this failure is over the limit.
    pub(super) fn note(&self, address: IpAddr, claim: &Claim) -> Option<Duration> {
        let now = Instant::now();
        let mut entry = self
            .counts
            .entry((address, claim.clone()))
            .or_insert(Window {
                opened: now,
                failures: 0,
            });
        if now.duration_since(entry.opened) >= self.window {
            *entry = Window {
                opened: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        let window = *entry;
        drop(entry);
        self.wait(window, now)
    }

    /// The rest of `window` when it is over the limit.
    fn wait(&self, window: Window, now: Instant) -> Option<Duration> {
        let left = self.window.checked_sub(now.duration_since(window.opened))?;
        (window.failures > self.limit && !left.is_zero()).then_some(left)
    }

    /// Forgets ended windows (bounded memory).
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        self.counts
            .retain(|_, w| now.duration_since(w.opened) < self.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_passes_the_next_failure_blocks_and_claims_are_apart() {
        let auths = FailedAuths::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let acme = Claim::Tenant("acme".into());
        for _ in 0..3 {
            assert_eq!(auths.note(ip, &acme), None);
        }
        assert_eq!(
            auths.blocked_for(ip, &acme),
            None,
            "the limit itself passes"
        );
        assert!(auths.note(ip, &acme).is_some(), "one over the limit blocks");
        assert!(auths.blocked_for(ip, &acme).is_some());
        assert_eq!(auths.blocked_for(ip, &Claim::NoTenant), None);
        assert_eq!(auths.blocked_for(ip, &Claim::Tenant("globex".into())), None);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(auths.blocked_for(other, &acme), None);
    }

    #[test]
    fn a_window_ends_on_the_wall_clock() {
        let auths = FailedAuths::new(1, Duration::from_millis(50));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        auths.note(ip, &Claim::NoTenant);
        assert!(auths.note(ip, &Claim::NoTenant).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(auths.blocked_for(ip, &Claim::NoTenant), None);
        auths.sweep();
        assert!(auths.counts.is_empty());
    }
}
