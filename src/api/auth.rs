//! Authentication and access as a tonic interceptor applied once per
//! service: it reads `authorization: Bearer <token>`, resolves it to a
//! [`Principal`], refuses a caller the called RPC's row of the access table
//! (`tenancy::RULES`) does not admit, and puts the principal in the request's
//! extensions, where handlers pick it up. Failed authentications count per
//! source address and claimed tenant (`quota::failed_auth`).

use std::sync::Arc;

use ipnet::IpNet;
use tokio_util::task::TaskTracker;
use tonic::{Request, Status};

use super::access::NamesTopics;
use super::rpc_metrics::RpcMethod;
use super::source::source_address;
use crate::error::Error;
use crate::quota::admission::{Admission, Claim};
use crate::tenancy::{need_of, validate_tenant_id, Principal, Tenancy, TenantKey};

/// The interceptor: authenticates, counts failures, and applies the access table.
#[derive(Clone)]
pub struct AuthInterceptor {
    tenancy: Arc<Tenancy>,
    admission: Arc<Admission>,
    trusted_proxies: Arc<[IpNet]>,
    tasks: TaskTracker,
}

impl AuthInterceptor {
    /// An interceptor over `tenancy`'s credentials; failed authentications
    /// count in `admission` by source address (the `x-forwarded-for` of a
    /// peer in `trusted_proxies`) and claimed tenant, and are audited in a
    /// task of `tasks` (so shutdown waits for the audit write).
    pub fn new(
        tenancy: Arc<Tenancy>,
        admission: Arc<Admission>,
        trusted_proxies: &[IpNet],
        tasks: TaskTracker,
    ) -> Self {
        AuthInterceptor {
            tenancy,
            admission,
            trusted_proxies: trusted_proxies.into(),
            tasks,
        }
    }

    /// The tenant a credential claims by its `tq_<tenant>_` prefix.
    fn claim(&self, token: Option<&str>) -> Claim {
        let Some(rest) = token.and_then(|t| t.strip_prefix("tq_")) else {
            return Claim::NoTenant;
        };
        match rest.split_once('_') {
            Some((tenant, _))
                if validate_tenant_id(tenant).is_ok() && self.tenancy.has_tenant(tenant) =>
            {
                Claim::Tenant(tenant.to_string())
            }
            Some(_) => Claim::UnknownTenant,
            None => Claim::NoTenant,
        }
    }

    /// Counts and audits a failed authentication; the error to answer.
    fn failed(
        &self,
        request: &Request<()>,
        source: Option<std::net::IpAddr>,
        claim: &Claim,
        e: Error,
    ) -> Status {
        let method = request_method(request);
        let who = source
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        tracing::warn!(source = %who, %method, "authentication failed");
        // Audited with the source address, never the credential. The
        // per-source limit bounds how many of these can be written.
        let tenancy = self.tenancy.clone();
        self.tasks.spawn(async move {
            if let Err(e) = tenancy.audit_now(&who, "auth.failed", "", method).await {
                tracing::error!(error = %e, "cannot audit a failed authentication");
            }
        });
        match self.admission.note_failed_auth(source, claim) {
            Ok(()) => e.into(),
            Err(blocked) => blocked.into(),
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
        let forwarded: Vec<&str> = request
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let peer = request.remote_addr().map(|a| a.ip());
        let source = source_address(peer, &forwarded, &self.trusted_proxies);
        let token = bearer(&request);
        let claim = self.claim(token);
        self.admission.check_source(source, &claim)?;
        let principal = match self.tenancy.authenticate(token) {
            Ok(principal) => principal,
            Err(e) => return Err(self.failed(&request, source, &claim, e)),
        };
        // The RPC-metrics layer names the method (an interceptor sees no URI).
        let method = request.extensions().get::<RpcMethod>().map(|m| &*m.0);
        let need = method.and_then(need_of).ok_or_else(|| {
            Error::PermissionDenied(format!(
                "no access rule for {}: refused",
                method.unwrap_or("this call")
            ))
        })?;
        principal.authorize(need)?;
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
    request
        .extensions()
        .get::<RpcMethod>()
        .map(|m| m.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The tenant key the interceptor attached to a request.
pub fn tenant_key<T>(request: &Request<T>) -> Result<Arc<TenantKey>, Status> {
    match request.extensions().get::<Principal>() {
        Some(Principal::Tenant(key)) => Ok(key.clone()),
        _ => Err(Status::unauthenticated("missing tenant credentials")),
    }
}

/// The tenant key of a request and the request's message, once every topic
/// the message names is on the key's allow-list (the one check of it).
pub fn tenant_request<T: NamesTopics>(request: Request<T>) -> Result<(Arc<TenantKey>, T), Status> {
    let key = tenant_key(&request)?;
    let message = request.into_inner();
    key.require_topics(message.topics())?;
    Ok((key, message))
}

/// The principal the interceptor attached to a request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}
