//! The `tallyq.v1.Billing` service: settlement, ledger, statements, accounts.
//! The operator reads everything and may settle; the billing reader reads
//! everything; a tenant key (with `manage`, no topic list: the access table
//! in `tenancy/access.rs`) reads only its own account, statements and ledger,
//! the ledger numbered by its own sequence.

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{account_message, page_limit};
use super::{reply, ApiState};
use crate::error::Error;
use crate::metering::parse_month;
use crate::proto::v1 as pb;
use crate::proto::v1::billing_server::Billing as BillingApi;
use crate::tenancy::Principal;

/// Ledger entries one ListLedgerEntries returns when the request leaves it 0.
const DEFAULT_LEDGER_PAGE: usize = 500;

/// The Billing service.
pub struct BillingService {
    state: ApiState,
}

impl BillingService {
    /// A service over `state`.
    pub fn new(state: ApiState) -> Self {
        BillingService { state }
    }
}

/// The tenant a read is for: a tenant key reads only its own (asking for
/// another is refused without saying whether it exists).
fn tenant_for(principal: &Principal, asked: &str) -> Result<String, Status> {
    match principal {
        Principal::Tenant(key) => {
            if asked.is_empty() || asked == key.tenant {
                Ok(key.tenant.clone())
            } else {
                Err(Error::PermissionDenied(
                    "a tenant key may read only its own tenant's billing".into(),
                )
                .into())
            }
        }
        Principal::Operator | Principal::BillingReader => {
            if asked.is_empty() {
                Err(Error::invalid("name the tenant").into())
            } else {
                Ok(asked.to_string())
            }
        }
    }
}

#[tonic::async_trait]
impl BillingApi for BillingService {
    async fn settle(
        &self,
        request: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::SettleResponse>, Status> {
        // Operator only: the access table refused everyone else.
        let req = request.into_inner();
        let billing = &self.state.billing;
        let day = billing
            .calendar()
            .parse_day(&req.through_day)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "through_day '{}' is not a date (YYYY-MM-DD)",
                    req.through_day
                ))
            })?;
        let (entries_written, tenant_days) = billing.settle_through(day).await?;
        let detail = format!(
            "through {}: {tenant_days} tenant-days, {entries_written} entries",
            req.through_day
        );
        self.state
            .tenancy
            .audit_now("operator", "billing.settle", "", detail)
            .await?;
        reply(pb::SettleResponse {
            entries_written,
            tenant_days,
        })
    }

    async fn list_ledger_entries(
        &self,
        request: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let limit = page_limit(req.limit, DEFAULT_LEDGER_PAGE)?;
        let billing = &self.state.billing;
        // A tenant pages by its own sequence; the global one (billing jobs
        // merge by node and sequence) is for the operator and billing reader.
        let (entries, next_sequence) = match principal {
            Principal::Tenant(key) => {
                billing.tenant_entries(&key.tenant, req.from_sequence, limit)?
            }
            Principal::Operator | Principal::BillingReader => {
                billing.entries(req.from_sequence, limit, None)?
            }
        };
        reply(pb::ListLedgerEntriesResponse {
            entries: entries.into_iter().map(Into::into).collect(),
            next_sequence,
        })
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let tenant = tenant_for(&principal, &req.tenant)?;
        let (year, month) = parse_month(&req.month)?;
        let billing = &self.state.billing;
        let mut statement = billing.statement(&tenant, year, month)?;
        if let Principal::Tenant(_) = principal {
            statement.final_statement = statement
                .final_statement
                .map(|entry| billing.as_tenant_sees(&tenant, entry));
        }
        reply(statement)
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let principal = principal(&request)?;
        let tenant = tenant_for(&principal, &request.into_inner().tenant)?;
        let billing = &self.state.billing;
        let account = billing.account(&tenant)?;
        reply(account_message(account, &billing.calendar()))
    }
}
