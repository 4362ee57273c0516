//! The `tallyq.v1.Operator` service: tenants, API keys, the test clock.

use tonic::{Request, Response, Status};

use super::convert::{device_message, key_message, tenant_message};
use super::ApiState;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::operator_server::Operator as OperatorApi;
use crate::tenancy::{NewTenant, Scope, SuspendReason, TenantUpdate};

/// The Operator service.
pub struct OperatorService {
    state: ApiState,
}

impl OperatorService {
    /// A service over `state`.
    pub fn new(state: ApiState) -> Self {
        OperatorService { state }
    }
}

#[tonic::async_trait]
impl OperatorApi for OperatorService {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let tenant = self
            .state
            .broker
            .tenancy()
            .create_tenant(NewTenant {
                id: req.id,
                display_name: req.display_name,
                contact_email: req.contact_email,
                plan: req.plan,
            })
            .await?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let tenant = self
            .state
            .broker
            .tenancy()
            .get_tenant(&request.into_inner().id)?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn list_tenants(
        &self,
        _request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let tenants = self.state.broker.tenancy().list_tenants();
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(tenant_message).collect(),
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let tenant = self
            .state
            .broker
            .tenancy()
            .update_tenant(
                &req.id,
                TenantUpdate {
                    display_name: req.display_name,
                    contact_email: req.contact_email,
                    plan: req.plan,
                    set_overrides: req.set_quota_overrides,
                    clear_overrides: req.clear_quota_overrides,
                },
            )
            .await?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let reason = match pb::SuspensionReason::try_from(req.reason) {
            Ok(pb::SuspensionReason::Abuse) => SuspendReason::Abuse,
            Ok(pb::SuspensionReason::Operator) => SuspendReason::Operator,
            Ok(pb::SuspensionReason::Arrears) => SuspendReason::Arrears,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown suspension reason {}: use ABUSE, OPERATOR or ARREARS",
                    req.reason
                ))
                .into())
            }
        };
        let tenant = self
            .state
            .broker
            .tenancy()
            .set_suspended(&req.id, Some(reason), "operator")
            .await?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn resume_tenant(
        &self,
        request: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let tenant = self
            .state
            .broker
            .tenancy()
            .set_suspended(&request.into_inner().id, None, "operator")
            .await?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn set_maintenance(
        &self,
        request: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::SetMaintenanceResponse>, Status> {
        let req = request.into_inner();
        if req.reason.len() > 200 {
            return Err(Error::invalid("reason may be at most 200 bytes").into());
        }
        let tenancy = self.state.broker.tenancy();
        let reason = if req.reason.is_empty() {
            "scheduled maintenance".to_string()
        } else {
            req.reason
        };
        let health = &self.state.health;
        if req.enabled {
            tenancy.set_maintenance(Some(reason.clone()));
            health
                .set_not_serving::<crate::proto::v1::broker_server::BrokerServer<crate::api::broker::BrokerService>>()
                .await;
        } else {
            tenancy.set_maintenance(None);
            health
                .set_serving::<crate::proto::v1::broker_server::BrokerServer<crate::api::broker::BrokerService>>()
                .await;
        }
        tenancy
            .audit_now(
                "operator",
                if req.enabled {
                    "maintenance.on"
                } else {
                    "maintenance.off"
                },
                "",
                reason,
            )
            .await?;
        Ok(Response::new(pb::SetMaintenanceResponse {
            enabled: req.enabled,
        }))
    }

    async fn terminate_tenant(
        &self,
        request: Request<pb::TerminateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let reason = if req.reason.is_empty() {
            "operator".to_string()
        } else {
            req.reason
        };
        if reason.len() > 200 {
            return Err(Error::invalid("reason may be at most 200 bytes").into());
        }
        let tenant = self
            .state
            .billing
            .terminate(&req.id, &reason, "operator")
            .await?;
        Ok(Response::new(tenant_message(tenant)))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        let req = request.into_inner();
        if req.note.len() > 200 {
            return Err(Error::invalid("note may be at most 200 bytes").into());
        }
        let (sequence, balance_minor, duplicate) = self
            .state
            .billing
            .record_payment(
                &req.tenant,
                &req.payment_id,
                req.amount_minor,
                &req.currency,
                req.note,
            )
            .await?;
        Ok(Response::new(pb::RecordPaymentResponse {
            sequence,
            balance_minor,
            duplicate,
        }))
    }

    async fn bind_device(
        &self,
        request: Request<pb::BindDeviceRequest>,
    ) -> Result<Response<pb::DeviceBinding>, Status> {
        let req = request.into_inner();
        let binding = self
            .state
            .broker
            .tenancy()
            .bind_device(&req.device_id, &req.tenant, req.rebind)
            .await?;
        Ok(Response::new(device_message(binding)))
    }

    async fn unbind_device(
        &self,
        request: Request<pb::UnbindDeviceRequest>,
    ) -> Result<Response<pb::UnbindDeviceResponse>, Status> {
        self.state
            .broker
            .tenancy()
            .unbind_device(&request.into_inner().device_id)
            .await?;
        Ok(Response::new(pb::UnbindDeviceResponse {}))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let devices = self
            .state
            .broker
            .tenancy()
            .list_devices(&request.into_inner().tenant);
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(device_message).collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let req = request.into_inner();
        if req.limit > 1000 {
            return Err(Error::invalid("limit may be at most 1000").into());
        }
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit as usize
        };
        let (events, next_sequence) =
            self.state
                .broker
                .tenancy()
                .audit_events(req.from_sequence, limit, &req.tenant)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events
                .into_iter()
                .map(|(sequence, e)| pb::AuditEvent {
                    sequence,
                    time_unix_ms: e.time_ms,
                    actor: e.actor,
                    action: e.action,
                    tenant: e.tenant,
                    detail: e.detail,
                })
                .collect(),
            next_sequence,
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        let scopes = req
            .scopes
            .iter()
            .map(|s| {
                Scope::from_i32(*s).ok_or_else(|| {
                    Error::invalid(format!(
                        "unknown scope {s}: use PRODUCE (1), CONSUME (2) or MANAGE (3)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let created = self
            .state
            .broker
            .tenancy()
            .create_key(&req.tenant, scopes, req.topics, req.description)
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(key_message(created.record)),
            secret: created.secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let keys = self
            .state
            .broker
            .tenancy()
            .list_keys(&request.into_inner().tenant)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.into_iter().map(key_message).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let key = self
            .state
            .broker
            .tenancy()
            .revoke_key(&request.into_inner().id)
            .await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            key: Some(key_message(key)),
        }))
    }

    async fn advance_clock(
        &self,
        request: Request<pb::AdvanceClockRequest>,
    ) -> Result<Response<pb::AdvanceClockResponse>, Status> {
        let now = self
            .state
            .clock
            .advance(request.into_inner().advance_ms)
            .await?;
        Ok(Response::new(pb::AdvanceClockResponse { now_unix_ms: now }))
    }
}
