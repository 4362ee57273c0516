//! The `tallyq.v1.Billing` service: settlement, ledger, statements, accounts.
//! The operator reads everything and may settle; the billing reader reads
//! everything; a tenant key reads only its own account and statements.

use tonic::{Request, Response, Status};

pub use super::convert::ledger_entry;
use super::convert::ledger_message;
use super::ApiState;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::billing_server::Billing as BillingApi;
use crate::tenancy::Principal;

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

fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
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
        self.state
            .broker
            .tenancy()
            .audit_now(
                "operator",
                "billing.settle",
                "",
                format!(
                    "through {}: {tenant_days} tenant-days, {entries_written} entries",
                    req.through_day
                ),
            )
            .await?;
        Ok(Response::new(pb::SettleResponse {
            entries_written,
            tenant_days,
        }))
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
        if req.limit > 1000 {
            return Err(Error::invalid("limit may be at most 1000").into());
        }
        let limit = if req.limit == 0 {
            500
        } else {
            req.limit as usize
        };
        let (entries, next_sequence) =
            self.state
                .billing
                .entries(req.from_sequence, limit, tenant.as_deref())?;
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries: entries.into_iter().map(ledger_message).collect(),
            next_sequence,
        }))
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let tenant = tenant_for(&principal, &req.tenant)?;
        let (year, month) = req
            .month
            .split_once('-')
            .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|(_, m)| (1..=12).contains(m))
            .ok_or_else(|| Error::invalid(format!("month '{}' is not YYYY-MM", req.month)))?;
        let s = self.state.billing.statement(&tenant, year, month)?;
        let sum = |f: fn(&crate::billing::StatementDay) -> u64| s.days.iter().map(f).sum();
        Ok(Response::new(pb::Statement {
            tenant: s.tenant.clone(),
            month: s.month.clone(),
            currency: s.currency.clone(),
            message_units: sum(|d| d.message_units),
            free_units_applied: sum(|d| d.free_units_applied),
            topic_days: sum(|d| d.topic_days),
            days: s
                .days
                .iter()
                .map(|d| pb::StatementDay {
                    day: d.day.clone(),
                    message_units: d.message_units,
                    free_units_applied: d.free_units_applied,
                    topic_days: d.topic_days,
                    storage_milli_gib_hours: d.storage_milli_gib_hours,
                    amount_minor: d.amount_minor,
                })
                .collect(),
            charges_minor: s.charges_minor,
            payments_minor: s.payments_minor,
            balance_minor: s.balance_minor,
            final_statement: s.final_statement.map(ledger_message),
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let principal = principal(&request)?;
        let tenant = tenant_for(&principal, &request.into_inner().tenant)?;
        let billing = &self.state.billing;
        let a = billing.account(&tenant)?;
        Ok(Response::new(pb::Account {
            tenant: a.tenant,
            currency: a.currency,
            charges_minor: a.charges_minor,
            payments_minor: a.payments_minor,
            balance_minor: a.balance_minor,
            oldest_unpaid_due_unix_ms: a.oldest_unpaid_due_ms.unwrap_or(0),
            status: a.status as i32,
            status_reason: a.status_reason,
            settled_through: a
                .settled_through
                .map(|d| billing.calendar().day_name(d))
                .unwrap_or_default(),
        }))
    }
}
