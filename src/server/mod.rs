//! Server assembly: opens the store, loads the domain, wires the gRPC
//! services (with auth, health and reflection), runs background work, and
//! shuts down gracefully. `main` only parses arguments and calls [`run`];
//! tests call it with their own listener and shutdown future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::api::admin::AdminService;
use crate::api::auth::{Audience, AuthInterceptor};
use crate::api::billing::BillingService;
use crate::api::broker::BrokerService;
use crate::api::operator::OperatorService;
use crate::api::rpc_metrics::RpcMetricsLayer;
use crate::api::ApiState;
use crate::billing::Billing;
use crate::broker::Broker;
use crate::config::Config;
use crate::metering::Calendar;
use crate::observability::Metrics;
use crate::proto::v1::admin_server::AdminServer;
use crate::proto::v1::billing_server::BillingServer;
use crate::proto::v1::broker_server::BrokerServer;
use crate::proto::v1::operator_server::OperatorServer;
use crate::quota::admission::Admission;
use crate::storage::Store;
use crate::tenancy::{load_or_create_billing_reader_token, load_or_create_operator_token, Tenancy};
use crate::wire::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW, MAX_DECODING_BYTES};

pub mod clock_store;
mod error;
mod scheduler;
pub mod tick;
mod tls;

use clock_store::ClockStore;
pub use error::ServerError;
use scheduler::Scheduler;
use tick::Ticker;
use tls::tls_config;

/// Runs the broker on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight RPCs finish up to the configured grace period,
/// flushes and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let token_path = config.operator_token_path();
    let (operator_token, generated) =
        load_or_create_operator_token(&token_path).map_err(|source| {
            ServerError::OperatorToken {
                path: token_path.clone(),
                source,
            }
        })?;
    if generated {
        tracing::warn!(path = %token_path.display(),
            "no operator credential was configured; generated one (mode 0600)");
    }
    let reader_path = config.billing_reader_token_path();
    let (billing_reader_token, _) =
        load_or_create_billing_reader_token(&reader_path).map_err(|source| {
            ServerError::OperatorToken {
                path: reader_path.clone(),
                source,
            }
        })?;

    let (store, _committer) = Store::open(&config.data_dir, config.cache_capacity_bytes)?;
    let clock = clock_store::restore(&store, config.clock)?;
    let tenancy = Arc::new(Tenancy::load(
        store.clone(),
        clock.clone(),
        config.plans.clone(),
        &operator_token,
        &billing_reader_token,
    )?);
    let (metrics, exporter) = Metrics::new(
        &config.node_id,
        config.metrics_max_tenant_labels,
        Some(config.metrics_listen),
    )?;
    let metrics = Arc::new(metrics);
    let exporter = exporter.map(|exporter| {
        let address = config.metrics_listen;
        tokio::spawn(async move {
            if let Err(e) = exporter.await {
                tracing::error!(%address, error = ?e, "the metrics endpoint stopped");
            }
        })
    });
    let admission = Arc::new(
        Admission::new(clock.clone(), config.failed_auth_per_minute).with_metrics(metrics.clone()),
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
        broker.clock().clone(),
        tenancy.clone(),
        Calendar::new(config.billing_utc_offset_minutes),
        metrics.clone(),
        broker.clone(),
        config.node_id.clone(),
    )?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let ticker = Arc::new(Ticker::new(broker.clone(), billing.clone()));
    let scheduler = Scheduler::start(
        ticker.clone(),
        broker.clone(),
        admission.clone(),
        Duration::from_secs(config.settlement_interval_seconds),
        stop_rx.clone(),
    );

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let state = ApiState {
        health: health_reporter.clone(),
        broker: broker.clone(),
        billing: billing.clone(),
        clock: Arc::new(ClockStore::new(
            clock,
            store.clone(),
            tenancy.clone(),
            ticker,
        )),
        shutdown: stop_rx.clone(),
    };
    health_reporter
        .set_serving::<BrokerServer<BrokerService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<OperatorServer<OperatorService>>()
        .await;
    health_reporter
        .set_serving::<BillingServer<BillingService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let tenant_auth = AuthInterceptor::new(tenancy.clone(), admission.clone(), Audience::Tenant);
    let operator_auth =
        AuthInterceptor::new(tenancy.clone(), admission.clone(), Audience::Operator);
    let broker_service = InterceptedService::new(
        BrokerServer::new(BrokerService::new(state.clone()))
            .max_decoding_message_size(MAX_DECODING_BYTES),
        tenant_auth.clone(),
    );
    let admin_service = InterceptedService::new(
        AdminServer::new(AdminService::new(state.clone())),
        tenant_auth,
    );
    let operator_service = InterceptedService::new(
        OperatorServer::new(OperatorService::new(state.clone())),
        operator_auth,
    );
    let billing_service = InterceptedService::new(
        BillingServer::new(BillingService::new(state.clone())),
        AuthInterceptor::new(tenancy.clone(), admission.clone(), Audience::Billing),
    );

    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, node_id = %config.node_id, data_dir = %config.data_dir.display(),
        "tallyq serving");

    let signal = {
        let stop_tx = stop_tx.clone();
        let health_reporter = health_reporter.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight RPCs");
            health_reporter
                .set_not_serving::<BrokerServer<BrokerService>>()
                .await;
            health_reporter
                .set_not_serving::<AdminServer<AdminService>>()
                .await;
            health_reporter
                .set_not_serving::<OperatorServer<OperatorService>>()
                .await;
            health_reporter
                .set_not_serving::<BillingServer<BillingService>>()
                .await;
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            let _ = stop_tx.send(true);
        }
    };
    // No Nagle: a reply must not wait for a delayed ACK. Windows sized for
    // 4 MiB batches so a large produce is not stalled by flow control.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let serve = builder
        .initial_stream_window_size(Some(HTTP2_STREAM_WINDOW))
        .initial_connection_window_size(Some(HTTP2_CONNECTION_WINDOW))
        .layer(RpcMetricsLayer::new(metrics.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(broker_service)
        .add_service(admin_service)
        .add_service(operator_service)
        .add_service(billing_service)
        .serve_with_incoming_shutdown(incoming, signal);
    let grace = config.shutdown_grace();
    let mut stopping = stop_rx.clone();
    let result = tokio::select! {
        result = serve => result.map_err(ServerError::from),
        _ = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight RPCs outlived the grace period");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    scheduler.stopped().await;
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    drop(state);
    store.flush()?;
    tracing::info!("tallyq stopped");
    result
}
