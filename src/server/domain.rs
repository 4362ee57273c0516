//! Start-up: the credentials and the metrics once ([`prepare`]), then the
//! store, the clock and the domain objects ([`load`]), loaded in dependency
//! order (tenancy and admission before the broker that asks them, the broker
//! before billing that reads it). After a store failure the supervisor calls
//! [`load`] again: a recovered domain is built exactly as at start-up, from
//! what is on disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::ExporterFuture;
use tokio::task::JoinHandle;

use super::clock_store::{self, ClockStore};
use super::tick::Ticker;
use super::ServerError;
use crate::billing::Billing;
use crate::broker::Broker;
use crate::config::Config;
use crate::crypto::{read_or_generate_master_key, Keyring, MasterKey};
use crate::metering::Calendar;
use crate::observability::Metrics;
use crate::quota::admission::Admission;
use crate::storage::{CommitterHandle, Store};
use crate::tenancy::{
    read_or_generate_billing_reader_token, read_or_generate_operator_token, Credential, Tenancy,
};

/// Everything the services and the background jobs work on. Dropping it
/// (with the services and jobs) lets go of every [`Store`] handle but the
/// one kept for the final flush.
pub(super) struct Domain {
    pub(super) tenancy: Arc<Tenancy>,
    pub(super) admission: Arc<Admission>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) broker: Arc<Broker>,
    pub(super) billing: Arc<Billing>,
    /// The tick, for the scheduler and AdvanceClock.
    pub(super) ticker: Arc<Ticker>,
    /// The manual clock's persistence, for AdvanceClock.
    pub(super) clock_store: Arc<ClockStore>,
}

/// What outlives a store: read or built once, at start-up.
#[derive(Clone)]
pub(super) struct Prepared {
    operator_token: String,
    billing_reader_token: String,
    /// The one recorder (counters keep counting across store recoveries).
    pub(super) metrics: Arc<Metrics>,
    /// The master key that wraps the data keys.
    master_key: Arc<MasterKey>,
}

/// What [`load`] hands to a serving round: the domain, the store (kept for
/// the final flush) and its committer thread.
pub(super) struct Loaded {
    pub(super) domain: Domain,
    pub(super) store: Store,
    pub(super) committer: CommitterHandle,
}

/// Reads the credentials (or generates them in memory: [`Credential::write`]
/// puts them on disk once the server has started) and builds the metrics
/// recorder, which binds the metrics port now; the endpoint is returned not
/// yet running.
pub(super) fn prepare(
    config: &Config,
) -> Result<(Prepared, Option<ExporterFuture>, Vec<Credential>), ServerError> {
    let operator = credential(
        &config.operator_token_path(),
        read_or_generate_operator_token,
    )?;
    let billing_reader = credential(
        &config.billing_reader_token_path(),
        read_or_generate_billing_reader_token,
    )?;
    // Written with the credentials once the store opened (see `start`).
    let master_path = config.master_key_path();
    let (master_key, master_file) =
        read_or_generate_master_key(&master_path).map_err(|source| ServerError::MasterKey {
            path: master_path.clone(),
            source,
        })?;
    let (metrics, exporter) = Metrics::new(
        &config.node_id,
        config.metrics_max_tenant_labels,
        Some(config.metrics_listen),
    )
    .map_err(|source| ServerError::MetricsListen {
        address: config.metrics_listen,
        source,
    })?;
    let prepared = Prepared {
        operator_token: operator.token.clone(),
        billing_reader_token: billing_reader.token.clone(),
        metrics: Arc::new(metrics),
        master_key: Arc::new(master_key),
    };
    Ok((
        prepared,
        exporter,
        vec![operator, billing_reader, master_file],
    ))
}

/// Opens the store and loads the domain from it.
pub(super) fn load(config: &Config, prepared: &Prepared) -> Result<Loaded, ServerError> {
    let (store, committer) = Store::open(&config.data_dir, config.cache_capacity_bytes)?;
    store.disk().set_minimum(config.min_free_disk_bytes);
    // Before anything else reads or writes: a wrong master key refuses here.
    let keyring = Arc::new(Keyring::open(&store, prepared.master_key.clone())?);
    let clock = clock_store::restore(&store, config.clock, config.clock_start_ms())?;
    let tenancy = Arc::new(Tenancy::load(
        store.clone(),
        clock.clone(),
        config.plans.clone(),
        &prepared.operator_token,
        &prepared.billing_reader_token,
        keyring,
    )?);
    let metrics = prepared.metrics.clone();
    let admission = Arc::new(
        Admission::new(clock.clone(), config.failed_auth_per_minute)
            .with_failed_auth_window(
                config.failed_auth_per_minute,
                Duration::from_secs(config.failed_auth_window_seconds),
            )
            .with_metrics(metrics.clone()),
    );
    let broker = Arc::new(Broker::load(
        store.clone(),
        clock.clone(),
        tenancy.clone(),
        admission.clone(),
        Calendar::new(config.billing_utc_offset_minutes),
        metrics.clone(),
    )?);
    let billing = Arc::new(Billing::load(
        store.clone(),
        clock.clone(),
        tenancy.clone(),
        Calendar::new(config.billing_utc_offset_minutes),
        metrics.clone(),
        broker.clone(),
        config.node_id.clone(),
    )?);
    let ticker = Arc::new(Ticker::new(broker.clone(), billing.clone()));
    let clock_store = Arc::new(ClockStore::new(
        clock,
        store.clone(),
        tenancy.clone(),
        ticker.clone(),
    ));
    Ok(Loaded {
        domain: Domain {
            tenancy,
            admission,
            metrics,
            broker,
            billing,
            ticker,
            clock_store,
        },
        store,
        committer,
    })
}

/// A credential read from `path`, or generated in memory when the file does
/// not exist yet; an error names the file.
fn credential(
    path: &Path,
    read_or_generate: fn(&Path) -> std::io::Result<Credential>,
) -> Result<Credential, ServerError> {
    read_or_generate(path).map_err(|source| ServerError::OperatorToken {
        path: path.to_path_buf(),
        source,
    })
}

/// Serves /metrics on `address` in a task of its own (aborted at shutdown).
pub(super) fn serve_metrics(exporter: ExporterFuture, address: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(%address, error = ?e, "the metrics endpoint stopped");
        }
    })
}
