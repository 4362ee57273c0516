//! Authentication as a tonic interceptor applied once per service: it reads
//! `authorization: Bearer <token>`, resolves it to a [`Principal`] and puts
//! that in the request's extensions, where handlers pick it up.

use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tonic::{Request, Status};

use crate::api::rpc_metrics::RpcMethod;
use crate::error::Error;
use crate::quota::admission::Admission;
use crate::tenancy::{Principal, Tenancy, TenantKey};

/// Which kind of caller a service admits.
#[derive(Clone, Copy, Debug)]
pub enum Audience {
    /// Tenant API keys (Broker, Admin).
    Tenant,
    /// The operator credential (Operator).
    Operator,
    /// Any valid credential; the handlers decide what each may read (Billing).
    Billing,
}

/// The interceptor: authenticates and checks the audience.
#[derive(Clone)]
pub struct AuthInterceptor {
    tenancy: Arc<Tenancy>,
    admission: Arc<Admission>,
    audience: Audience,
    tasks: TaskTracker,
}

impl AuthInterceptor {
    /// An interceptor admitting `audience`; failed authentications count
    /// against the source address in `admission` and are audited in a task
    /// of `tasks` (so shutdown waits for the audit write).
    pub fn new(
        tenancy: Arc<Tenancy>,
        admission: Arc<Admission>,
        audience: Audience,
        tasks: TaskTracker,
    ) -> Self {
        AuthInterceptor {
            tenancy,
            admission,
            audience,
            tasks,
        }
    }
}

fn bearer<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let address = request.remote_addr().map(|a| a.ip());
        self.admission.check_address(address)?;
        let principal = match self.tenancy.authenticate(bearer(&request)) {
            Ok(principal) => principal,
            Err(e) => {
                self.admission.note_failed_auth(address);
                let method = request_method(&request);
                let source = address
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "unknown".into());
                tracing::warn!(%source, %method, "authentication failed");
                // Audited with the source address, never the credential. The
                // per-address limit bounds how many of these can be written.
                let tenancy = self.tenancy.clone();
                self.tasks.spawn(async move {
                    if let Err(e) = tenancy.audit_now(&source, "auth.failed", "", method).await {
                        tracing::error!(error = %e, "cannot audit a failed authentication");
                    }
                });
                return Err(e.into());
            }
        };
        match (&principal, self.audience) {
            (_, Audience::Billing)
            | (Principal::Tenant(_), Audience::Tenant)
            | (Principal::Operator, Audience::Operator) => {}
            (Principal::BillingReader, _) => {
                return Err(Error::PermissionDenied(
                    "the billing-reader credential may only read the Billing service".into(),
                )
                .into())
            }
            (Principal::Operator, Audience::Tenant) => {
                return Err(Error::PermissionDenied(
                    "the operator credential cannot act as a tenant; use a tenant API key".into(),
                )
                .into())
            }
            (Principal::Tenant(_), Audience::Operator) => {
                return Err(Error::PermissionDenied(
                    "this service needs the operator credential".into(),
                )
                .into())
            }
        }
        let who = match &principal {
            Principal::Tenant(key) => key.tenant.as_str(),
            Principal::Operator => "operator",
            Principal::BillingReader => "billing-reader",
        };
        tracing::Span::current().record("tenant", who);
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The RPC's full method name (`tallyq.v1.Broker/Produce`), as the RPC
/// metrics layer recorded it ("unknown" outside that layer).
fn request_method(request: &Request<()>) -> String {
    if let Some(m) = request.extensions().get::<RpcMethod>() {
        return m.0.clone();
    }
    request
        .extensions()
        .get::<tonic::GrpcMethod>()
        .map(|m| format!("{}/{}", m.service(), m.method()))
        .unwrap_or_else(|| "unknown".into())
}

/// The tenant key the interceptor attached to a request.
pub fn tenant_key<T>(request: &Request<T>) -> Result<Arc<TenantKey>, Status> {
    match request.extensions().get::<Principal>() {
        Some(Principal::Tenant(key)) => Ok(key.clone()),
        _ => Err(Status::unauthenticated("missing tenant credentials")),
    }
}

/// The tenant key of a request and the request's message.
pub fn tenant_request<T>(request: Request<T>) -> Result<(Arc<TenantKey>, T), Status> {
    let key = tenant_key(&request)?;
    Ok((key, request.into_inner()))
}

/// The principal the interceptor attached to a request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}
