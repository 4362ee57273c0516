//! Billing: daily settlement of metered usage into an append-only,
//! hash-chained ledger; payments, balances and arrears; termination with a
//! final statement.
//!
//! Settlement of a tenant-day reads the usage counters that were written with
//! the data they count, prices them by the tenant's plan, and appends one
//! ledger entry per meter (idempotent by tenant/day/meter) together with the
//! tenant's settlement progress in one atomic write. A crash between two
//! tenant-days resumes from the progress record: no gap, no duplicate.
//!
//! ## Where things are
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | [`Billing`] and its start-up ([`Billing::load`]), meter names |
//! | `port.rs` | [`BrokerPort`]: the only things billing asks of the broker |
//! | `settle.rs` | closing ended days: measure, price, skip what is written, chain |
//! | `chain.rs` | the ledger in the store: append, commit or rewind, read, idempotency keys |
//! | `account.rs` | a tenant's money rebuilt from its entries; [`AccountView`] |
//! | `payments.rs` | recording a payment once per payment id |
//! | `arrears.rs` | suspend, resume, terminate by how long a charge is unpaid |
//! | `statement.rs` | the monthly [`Statement`] |
//! | `terminate.rs` | final settlement, erasure, the final statement entry |
//! | `moves.rs` | a tenant moving between brokers: settling up to the stop, the moved_out / moved_in entries |
//! | `usage.rs` | live usage of the days not settled yet ([`UsageLine`]) |
//! | `ledger.rs` | the entry format and its hash chain (pure; the CLI verifies with it) |
//! | `pricing.rs` | integer price arithmetic |
//!
//! Rules a change must keep: every ledger append and every account update
//! happens under the chain lock (`head`) through `Billing::chain` and
//! `Billing::commit_chained`, so sequences have no gaps and a failed commit
//! rewinds the tail; the idempotency key formats in `chain.rs` are stored and
//! never change. Decisions (pricing a day, the free allowance, statement sums,
//! arrears steps) are pure functions with unit tests next to them; the
//! methods around them only read and write. Billing reads and writes the
//! store through typed methods only (`Store::usage_on`, `Store::topic_lives`,
//! `WriteSet::append_ledger_entry`, `WriteSet::put_settled_through`, ...: the
//! repositories in `storage/repo/` that hold the keys and rows) and reaches
//! the broker only through [`BrokerPort`].

pub mod ledger;
pub mod pricing;

mod account;
mod arrears;
mod chain;
mod moves;
mod payments;
mod port;
mod settle;
mod statement;
mod tenant_ledger;
mod terminate;
mod usage;

use std::sync::Arc;

use dashmap::DashMap;

use crate::clock::Clock;
use crate::error::Result;
use crate::metering::Calendar;
use crate::observability::Metrics;
use crate::storage::Store;
use crate::tenancy::Tenancy;
use account::Account;
use chain::LedgerHead;

pub use account::AccountView;
pub use moves::{snapshot_id_of, MoveAccount};
pub use port::{BrokerPort, PortFuture};
pub use statement::{Statement, StatementDay};
pub use usage::UsageLine;

/// Meter names, as they appear in ledger entries.
pub mod meter {
    /// Produced + delivered units.
    pub const MESSAGE_UNITS: &str = "message_units";
    /// Topics that existed during the day.
    pub const TOPIC_DAYS: &str = "topic_days";
    /// Retained storage, in milli-GiB-hours.
    pub const STORAGE_GIB_HOURS: &str = "storage_gib_hours";
}

const DAY_MS: i64 = 86_400_000;

/// Settlement, ledger, accounts.
pub struct Billing {
    store: Store,
    clock: Clock,
    calendar: Calendar,
    node_id: String,
    tenancy: Arc<Tenancy>,
    metrics: Arc<Metrics>,
    broker: Arc<dyn BrokerPort>,
    head: tokio::sync::Mutex<LedgerHead>,
    accounts: DashMap<String, Account>,
}

impl Billing {
    /// Loads the ledger's tail and every account from the store. Billing
    /// reads usage from `store` and asks the broker only through `broker`
    /// (see [`BrokerPort`]); `node_id` is stamped on every entry it writes.
    pub fn load(
        store: Store,
        clock: Clock,
        tenancy: Arc<Tenancy>,
        calendar: Calendar,
        metrics: Arc<Metrics>,
        broker: Arc<dyn BrokerPort>,
        node_id: String,
    ) -> Result<Self> {
        let (head, accounts) = chain::load_ledger(&store, &calendar)?;
        Ok(Billing {
            store,
            clock,
            calendar,
            node_id,
            tenancy,
            metrics,
            broker,
            head: tokio::sync::Mutex::new(head),
            accounts,
        })
    }

    /// The billing calendar.
    pub fn calendar(&self) -> Calendar {
        self.calendar
    }

    fn today(&self) -> i64 {
        self.calendar.day_of(self.clock.now_ms())
    }
}
