//! The gRPC front door: the four tallyq services, each behind the auth
//! interceptor of its audience, with health and reflection beside them, all
//! under one RPC-metrics layer and the transport settings (TLS, HTTP/2
//! windows, no Nagle).

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use super::domain::Domain;
use super::tls::tls_config;
use super::ServerError;
use crate::api::admin::AdminService;
use crate::api::auth::{Audience, AuthInterceptor};
use crate::api::billing::BillingService;
use crate::api::broker::BrokerService;
use crate::api::operator::OperatorService;
use crate::api::rpc_metrics::RpcMetricsLayer;
use crate::api::ApiState;
use crate::config::Config;
use crate::proto::v1::admin_server::AdminServer;
use crate::proto::v1::billing_server::BillingServer;
use crate::proto::v1::broker_server::BrokerServer;
use crate::proto::v1::operator_server::OperatorServer;
use crate::wire::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW, MAX_DECODING_BYTES};

/// The routed services, ready to serve.
pub(super) type Routes = Router<Stack<RpcMetricsLayer, Identity>>;

/// The four tallyq services by gRPC name: health reports on exactly these.
const SERVICES: [&str; 4] = [
    <BrokerServer<BrokerService> as NamedService>::NAME,
    <AdminServer<AdminService> as NamedService>::NAME,
    <OperatorServer<OperatorService> as NamedService>::NAME,
    <BillingServer<BillingService> as NamedService>::NAME,
];

/// The health statuses the server itself sets (maintenance mode sets the
/// Broker service's from the Operator service).
#[derive(Clone)]
pub(super) struct Health(HealthReporter);

impl Health {
    /// Sets every tallyq service, and the server as a whole (""), to `status`.
    pub(super) async fn set_all(&self, status: ServingStatus) {
        for service in SERVICES.into_iter().chain([""]) {
            self.0.set_service_status(service, status).await;
        }
    }
}

/// Builds the services over `domain`; their streams end when `shutdown`
/// turns true, and the tasks they leave running are tracked in `tasks`.
/// Every service starts SERVING.
pub(super) async fn routes(
    config: &Config,
    domain: &Domain,
    shutdown: watch::Receiver<bool>,
    tasks: &TaskTracker,
) -> Result<(Routes, Health), ServerError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health(reporter.clone());
    health.set_all(ServingStatus::Serving).await;
    let state = ApiState {
        health: reporter,
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
    let auth = |audience| {
        AuthInterceptor::new(
            domain.tenancy.clone(),
            domain.admission.clone(),
            audience,
            tasks.clone(),
        )
    };

    let mut builder = Server::builder();
    if let Some(tls) = tls_config(config)? {
        builder = builder.tls_config(tls)?;
    }
    // Windows sized for 4 MiB batches so a large produce is not stalled by
    // flow control.
    let routes = builder
        .initial_stream_window_size(Some(HTTP2_STREAM_WINDOW))
        .initial_connection_window_size(Some(HTTP2_CONNECTION_WINDOW))
        .layer(RpcMetricsLayer::new(domain.metrics.clone()))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(InterceptedService::new(
            BrokerServer::new(BrokerService::new(state.clone()))
                .max_decoding_message_size(MAX_DECODING_BYTES),
            auth(Audience::Tenant),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(AdminService::new(state.clone())),
            auth(Audience::Tenant),
        ))
        .add_service(InterceptedService::new(
            OperatorServer::new(OperatorService::new(state.clone())),
            auth(Audience::Operator),
        ))
        .add_service(InterceptedService::new(
            BillingServer::new(BillingService::new(state)),
            auth(Audience::Billing),
        ));
    Ok((routes, health))
}

/// The accepted connections of `listener`, without Nagle: a reply must not
/// wait for a delayed ACK.
pub(super) fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
