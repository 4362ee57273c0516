//! The `tallyq.v1.Operator` service: tenants, devices, API keys, payments,
//! maintenance mode, the audit log and the test clock.

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::broker::BrokerService;
use super::convert::{page_limit, scopes, short_text, suspend_reason, tenant_update};
use super::{reply, ApiState, ResponseStream};
use crate::clock::{format_rfc3339_ms, ClockKind};
use crate::proto::v1 as pb;
use crate::proto::v1::broker_server::BrokerServer;
use crate::proto::v1::operator_server::Operator as OperatorApi;

/// Audit entries one ListAuditEvents returns when the request leaves it 0.
const DEFAULT_AUDIT_PAGE: usize = 100;
/// Bytes of a move snapshot per MoveSnapshotChunk (well under 4 MiB).
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Who the operator's actions are audited as.
const OPERATOR: &str = "operator";

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
        let tenant = request.into_inner().into();
        reply(self.state.tenancy.create_tenant(tenant).await?)
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        reply(self.state.tenancy.get_tenant(&request.into_inner().id)?)
    }

    async fn list_tenants(
        &self,
        _request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let tenants = self.state.tenancy.list_tenants();
        reply(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(Into::into).collect(),
        })
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let (id, update) = tenant_update(request.into_inner());
        reply(self.state.tenancy.update_tenant(&id, update).await?)
    }

    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let reason = suspend_reason(req.reason)?;
        let tenancy = &self.state.tenancy;
        reply(
            tenancy
                .set_suspended(&req.id, Some(reason), OPERATOR)
                .await?,
        )
    }

    async fn resume_tenant(
        &self,
        request: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let id = request.into_inner().id;
        reply(
            self.state
                .tenancy
                .set_suspended(&id, None, OPERATOR)
                .await?,
        )
    }

    async fn set_maintenance(
        &self,
        request: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::SetMaintenanceResponse>, Status> {
        let req = request.into_inner();
        short_text("reason", &req.reason)?;
        let reason = if req.reason.is_empty() {
            "scheduled maintenance".to_string()
        } else {
            req.reason
        };
        let tenancy = &self.state.tenancy;
        let health = &self.state.health;
        let action = if req.enabled {
            tenancy.set_maintenance(Some(reason.clone()));
            health
                .set_not_serving::<BrokerServer<BrokerService>>()
                .await;
            "maintenance.on"
        } else {
            tenancy.set_maintenance(None);
            health.set_serving::<BrokerServer<BrokerService>>().await;
            "maintenance.off"
        };
        tenancy.audit_now(OPERATOR, action, "", reason).await?;
        reply(pb::SetMaintenanceResponse {
            enabled: req.enabled,
        })
    }

    async fn terminate_tenant(
        &self,
        request: Request<pb::TerminateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let req = request.into_inner();
        let reason = if req.reason.is_empty() {
            OPERATOR.to_string()
        } else {
            req.reason
        };
        short_text("reason", &reason)?;
        let billing = &self.state.billing;
        reply(billing.terminate(&req.id, &reason, OPERATOR).await?)
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        let req = request.into_inner();
        short_text("note", &req.note)?;
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
        reply(pb::RecordPaymentResponse {
            sequence,
            balance_minor,
            duplicate,
        })
    }

    async fn bind_device(
        &self,
        request: Request<pb::BindDeviceRequest>,
    ) -> Result<Response<pb::DeviceBinding>, Status> {
        let req = request.into_inner();
        let tenancy = &self.state.tenancy;
        reply(
            tenancy
                .bind_device(&req.device_id, &req.tenant, req.rebind)
                .await?,
        )
    }

    async fn unbind_device(
        &self,
        request: Request<pb::UnbindDeviceRequest>,
    ) -> Result<Response<pb::UnbindDeviceResponse>, Status> {
        let device_id = request.into_inner().device_id;
        self.state.tenancy.unbind_device(&device_id).await?;
        reply(pb::UnbindDeviceResponse {})
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let devices = self
            .state
            .tenancy
            .list_devices(&request.into_inner().tenant);
        reply(pb::ListDevicesResponse {
            devices: devices.into_iter().map(Into::into).collect(),
        })
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let req = request.into_inner();
        let limit = page_limit(req.limit, DEFAULT_AUDIT_PAGE)?;
        let (events, next_sequence) =
            self.state
                .tenancy
                .audit_events(req.from_sequence, limit, &req.tenant)?;
        reply(pb::ListAuditEventsResponse {
            events: events.into_iter().map(Into::into).collect(),
            next_sequence,
        })
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        let scopes = scopes(&req.scopes)?;
        let created = self
            .state
            .tenancy
            .create_key(&req.tenant, scopes, req.topics, req.description)
            .await?;
        reply(pb::CreateApiKeyResponse {
            key: Some(created.key.into()),
            secret: created.secret,
        })
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let keys = self.state.tenancy.list_keys(&request.into_inner().tenant)?;
        reply(pb::ListApiKeysResponse {
            keys: keys.into_iter().map(Into::into).collect(),
        })
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let key = self
            .state
            .tenancy
            .revoke_key(&request.into_inner().id)
            .await?;
        reply(pb::RevokeApiKeyResponse {
            key: Some(key.into()),
        })
    }

    async fn advance_clock(
        &self,
        request: Request<pb::AdvanceClockRequest>,
    ) -> Result<Response<pb::AdvanceClockResponse>, Status> {
        let advance_ms = request.into_inner().advance_ms;
        let now_unix_ms = self.state.clock.advance(advance_ms).await?;
        reply(pb::AdvanceClockResponse { now_unix_ms })
    }

    async fn get_clock(
        &self,
        _request: Request<pb::GetClockRequest>,
    ) -> Result<Response<pb::GetClockResponse>, Status> {
        let (now_unix_ms, kind) = self.state.clock.read();
        let mode = match kind {
            ClockKind::System => pb::ClockMode::System,
            ClockKind::Manual => pb::ClockMode::Manual,
        };
        reply(pb::GetClockResponse {
            now_unix_ms,
            mode: mode as i32,
            now: format_rfc3339_ms(now_unix_ms),
        })
    }

    type ExportTenantForMoveStream = ResponseStream<pb::MoveSnapshotChunk>;

    async fn export_tenant_for_move(
        &self,
        request: Request<pb::ExportTenantForMoveRequest>,
    ) -> Result<Response<Self::ExportTenantForMoveStream>, Status> {
        let tenant = request.into_inner().tenant;
        let s = &self.state;
        let (snapshot_id, encoded) =
            crate::transfer::export_for_move(&s.broker, &s.tenancy, &s.billing, &tenant).await?;
        let total_bytes = encoded.bytes.len() as u64;
        let all = bytes::Bytes::from(encoded.bytes);
        let mut chunks: Vec<pb::MoveSnapshotChunk> = (0..all.len())
            .step_by(SNAPSHOT_CHUNK)
            .map(|at| pb::MoveSnapshotChunk {
                data: all.slice(at..all.len().min(at + SNAPSHOT_CHUNK)),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::MoveSnapshotChunk::default());
        }
        chunks[0].snapshot_id = snapshot_id;
        chunks[0].sha256 = encoded.sha256;
        chunks[0].total_bytes = total_bytes;
        let stream = tokio_stream::iter(chunks.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn import_tenant(
        &self,
        request: Request<Streaming<pb::ImportTenantRequest>>,
    ) -> Result<Response<pb::ImportTenantResponse>, Status> {
        let mut inbound = request.into_inner();
        let (mut bytes, mut sha256, mut reprice) = (Vec::new(), String::new(), false);
        while let Some(part) = inbound.next().await {
            let part = part?;
            if !part.sha256.is_empty() {
                sha256 = part.sha256;
            }
            reprice |= part.reprice;
            bytes.extend_from_slice(&part.data);
        }
        if sha256.is_empty() {
            return Err(Status::invalid_argument(
                "an import needs the snapshot's sha256 (in its first message)",
            ));
        }
        let s = &self.state;
        let done =
            crate::transfer::import(&s.broker, &s.tenancy, &s.billing, &bytes, &sha256, reprice)
                .await?;
        reply(pb::ImportTenantResponse {
            tenant: done.tenant,
            snapshot_id: done.snapshot_id,
            already_imported: done.already_imported,
            topics: done.imported.topics,
            messages: done.imported.messages,
            subscriptions: done.imported.subscriptions,
        })
    }

    async fn finish_tenant_move(
        &self,
        request: Request<pb::FinishTenantMoveRequest>,
    ) -> Result<Response<pb::FinishTenantMoveResponse>, Status> {
        let req = request.into_inner();
        short_text("target_node", &req.target_node)?;
        let billing = &self.state.billing;
        let (tenant, already_finished) = billing
            .finish_move_out(&req.tenant, &req.snapshot_id, &req.target_node)
            .await?;
        reply(pb::FinishTenantMoveResponse {
            tenant: Some(tenant.into()),
            already_finished,
        })
    }
}
