//! A tower layer, applied once to the whole server, that records every RPC's
//! latency by method and gRPC status code, and at DEBUG logs it in a span
//! with the method, tenant and code (never the credential or the payload).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};
use tracing::Instrument;

use crate::observability::Metrics;

/// The layer.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The RPC's full method name (`tallyq.v1.Broker/Produce`), put in the
/// request's extensions by [`RpcMetricsLayer`] for the layers and
/// interceptors inside it.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub Arc<str>);

/// A `grpc-status` header's value by name (`5` is `NOT_FOUND`).
fn code_name(code: &str) -> &'static str {
    code.parse()
        .map(crate::wire::code_name)
        .unwrap_or("UNKNOWN")
}

impl<S, B, R> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The full gRPC name, as grpc.health.v1.Health/Check is named:
        // tallyq.v1.Broker/Produce.
        let method: Arc<str> = request.uri().path().trim_start_matches('/').into();
        // For the auth interceptor, which sees no URI (tonic hands it the
        // metadata and these extensions).
        request.extensions_mut().insert(RpcMethod(method.clone()));
        let started = Instant::now();
        let metrics = self.metrics.clone();
        // One span per RPC at DEBUG; the auth interceptor records the tenant
        // in it (never a credential or a payload). At the default level (info)
        // the span is off: creating, recording, entering and closing it in the
        // fmt subscriber cost ~7,000 instructions per RPC, ~5% of a
        // one-message produce (BENCHMARKS.md "Per-request edge"), and the
        // warnings of the request path name their tenant and topic themselves.
        let span = tracing::debug_span!(
            "rpc",
            method = %method,
            tenant = tracing::field::Empty,
            code = tracing::field::Empty
        );
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let outer = span.clone();
        Box::pin(
            async move {
                let result = response.await;
                // Errors answer trailers-only, with grpc-status in the headers;
                // success streams its status in trailers, after the body.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(code_name)
                        .unwrap_or("OK"),
                    Err(_) => "UNAVAILABLE",
                };
                let seconds = started.elapsed().as_secs_f64();
                metrics.observe_rpc(&method, code, seconds);
                // Only the debug line below shows the code in the span (at
                // info nothing is logged after it), and recording a field
                // into the formatted span costs ~1 us per RPC.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    outer.record("code", code);
                    tracing::debug!(seconds, "rpc done");
                }
                result
            }
            .instrument(span),
        )
    }
}
