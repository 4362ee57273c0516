//! The `tallyq.v1.Billing` service: settlement, ledger, statements, accounts.
//! The operator reads everything and may settle; the billing reader reads
//! everything; a tenant key reads only its own account and statements.

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{account_message, page_limit};
use super::{reply, ApiState};
use crate::error::Error;
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

/// The month a GetStatement request names ("YYYY-MM").
fn month(text: &str) -> Result<(i32, u32), Error> {
    text.split_once('-')
        .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
        .filter(|(_, m)| (1..=12).contains(m))
        .ok_or_else(|| Error::invalid(format!("month '{text}' is not YYYY-MM")))
}

#[tonic::async_trait]
impl BillingApi for BillingService {
    async fn settle(
        &self,
        request: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::SettleResponse>, Status> {
        if !matches!(principal(&request)?, Principal::Operator) {
            return Err(Error::PermissionDenied("only the operator may settle".into()).into());
        }
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
        let tenant = match principal(&request)? {
            Principal::Tenant(key) => Some(key.tenant.clone()),
            Principal::Operator | Principal::BillingReader => None,
        };
        let req = request.into_inner();
        let limit = page_limit(req.limit, DEFAULT_LEDGER_PAGE)?;
        let (entries, next_sequence) =
            self.state
                .billing
                .entries(req.from_sequence, limit, tenant.as_deref())?;
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
        let (year, month) = month(&req.month)?;
        reply(self.state.billing.statement(&tenant, year, month)?)
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
