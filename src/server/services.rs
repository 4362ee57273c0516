//! The gRPC front door: the four tallyq services, each behind the auth
//! interceptor of its audience, with health and reflection beside them, all
//! under one RPC-metrics layer, the store [gate](super::gate) and the
//! transport settings (TLS, HTTP/2 windows, no Nagle). While the store
//! recovers, [`recovering_routes`] serves health alone behind the same
//! layers.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use super::answer_body::{self, AnswerBodyLayer};
use super::domain::Domain;
use super::gate::GateLayer;
use super::tls::tls_config;
use super::ServerError;
use crate::api::admin::AdminService;
use crate::api::auth::AuthInterceptor;
use crate::api::billing::BillingService;
use crate::api::broker::BrokerService;
use crate::api::operator::OperatorService;
use crate::api::rpc_metrics::RpcMetricsLayer;
use crate::api::ApiState;
use crate::config::Config;
use crate::observability::Metrics;
use crate::proto::v1::admin_server::AdminServer;
use crate::proto::v1::billing_server::BillingServer;
use crate::proto::v1::broker_server::BrokerServer;
use crate::proto::v1::operator_server::OperatorServer;
use crate::wire::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW, MAX_DECODING_BYTES};
use crate::wire::{
    HTTP2_KEEPALIVE_INTERVAL_SECS, HTTP2_KEEPALIVE_TIMEOUT_SECS,
    MAX_CONCURRENT_STREAMS_PER_CONNECTION, REQUEST_TIMEOUT_SECS,
};

/// The layers around every route: the answers' credit outermost (on the
/// body hyper hands to h2), RPC metrics, the store gate inside.
type Layers = Stack<GateLayer, Stack<RpcMetricsLayer, Stack<AnswerBodyLayer, Identity>>>;

/// The routed services, ready to serve.
pub(super) type Routes = Router<Layers>;

/// The four tallyq services by gRPC name: health reports on exactly these.
const SERVICES: [&str; 4] = [
    <BrokerServer<BrokerService> as NamedService>::NAME,
    <AdminServer<AdminService> as NamedService>::NAME,
    <OperatorServer<OperatorService> as NamedService>::NAME,
    <BillingServer<BillingService> as NamedService>::NAME,
];

/// The health statuses the server itself sets (maintenance mode sets the
/// Broker service's from the Operator service). One for the server's whole
/// life, so what a serving round or the recovery sets is what every round's
/// health service reports.
#[derive(Clone)]
pub(super) struct Health(HealthReporter);

impl Health {
    /// Every status unknown but the server's ("" is SERVING until set).
    pub(super) fn new() -> Self {
        Health(HealthReporter::new())
    }

    /// The `grpc.health.v1.Health` service reporting these statuses.
    fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.0.clone()))
    }

    /// Sets every tallyq service, and the server as a whole (""), to `status`.
    pub(super) async fn set_all(&self, status: ServingStatus) {
        for service in SERVICES.into_iter().chain([""]) {
            self.0.set_service_status(service, status).await;
        }
    }
}

/// Builds the services over `domain`, gated on its store's health; their
/// streams end when `shutdown` turns true, and the tasks they leave running
/// are tracked in `tasks`. Every service turns SERVING.
pub(super) async fn routes(
    config: &Config,
    domain: &Domain,
    health: &Health,
    gate: GateLayer,
    shutdown: watch::Receiver<bool>,
    tasks: &TaskTracker,
) -> Result<Routes, ServerError> {
    health.set_all(ServingStatus::Serving).await;
    let state = ApiState {
        health: health.0.clone(),
        broker: domain.broker.clone(),
        tenancy: domain.tenancy.clone(),
        admission: domain.admission.clone(),
        billing: domain.billing.clone(),
        clock: domain.clock_store.clone(),
        shutdown,
        tasks: tasks.clone(),
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // One interceptor for every service: the access table decides who may
    // call which RPC.
    let auth = || {
        AuthInterceptor::new(
            domain.tenancy.clone(),
            domain.admission.clone(),
            &config.trusted_proxies,
            tasks.clone(),
        )
    };

    let routes = transport(config, domain.metrics.clone(), gate)?
        .add_service(health.service())
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(InterceptedService::new(
            BrokerServer::new(BrokerService::new(state.clone()))
                .max_decoding_message_size(MAX_DECODING_BYTES),
            auth(),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(AdminService::new(state.clone())),
            auth(),
        ))
        .add_service(InterceptedService::new(
            OperatorServer::new(OperatorService::new(state.clone())),
            auth(),
        ))
        .add_service(InterceptedService::new(
            BillingServer::new(BillingService::new(state)),
            auth(),
        ));
    Ok(routes)
}

/// What the recovering server serves: health alone, behind a gate on the
/// failed store that answers every other call `UNAVAILABLE`.
pub(super) fn recovering_routes(
    config: &Config,
    metrics: std::sync::Arc<Metrics>,
    health: &Health,
    gate: GateLayer,
) -> Result<Routes, ServerError> {
    Ok(transport(config, metrics, gate)?.add_service(health.service()))
}

/// The transport settings and the layers every route is served behind.
fn transport(
    config: &Config,
    metrics: std::sync::Arc<Metrics>,
    gate: GateLayer,
) -> Result<Server<Layers>, ServerError> {
    let mut builder = Server::builder();
    if let Some(tls) = tls_config(config)? {
        builder = builder.tls_config(tls)?;
    }
    // Windows sized for 4 MiB batches so a large produce is not stalled by
    // flow control. A connection carries a bounded number of streams, a
    // request that stops sending is dropped, a vanished peer is noticed
    // (SPEC §4; tonic's own settings, see crate::wire).
    Ok(builder
        .initial_stream_window_size(Some(HTTP2_STREAM_WINDOW))
        .initial_connection_window_size(Some(HTTP2_CONNECTION_WINDOW))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS_PER_CONNECTION))
        .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
        .http2_keepalive_interval(Some(Duration::from_secs(HTTP2_KEEPALIVE_INTERVAL_SECS)))
        .http2_keepalive_timeout(Some(Duration::from_secs(HTTP2_KEEPALIVE_TIMEOUT_SECS)))
        .layer(answer_body::layer())
        .layer(RpcMetricsLayer::new(metrics))
        .layer(gate))
}

/// The accepted connections of `listener`, without Nagle: a reply must not
/// wait for a delayed ACK.
pub(super) fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
