//! Billing for operators and tenants: `tallyq statement`, `account`,
//! `usage`, `settle` and `payment`.

use anyhow::Result;
use clap::Args;

use super::print::status_name;
use tallyq::billing::pricing::format_minor;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// `tallyq statement` arguments: `[TENANT] MONTH`.
#[derive(Debug, Args)]
#[command(allow_missing_positional = true)]
pub struct StatementArgs {
    /// Tenant id (omit with a tenant key: its own tenant).
    pub tenant: Option<String>,
    /// Month, YYYY-MM.
    pub month: String,
    /// Ask every node of this shard map and merge (a tenant that moved in
    /// the month has lines on both nodes).
    #[arg(long)]
    pub shard_map: Option<std::path::PathBuf>,
}

/// `tallyq account` arguments.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Tenant id (omit with a tenant key).
    pub tenant: Option<String>,
}

/// `tallyq settle` arguments.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// Last day to settle, YYYY-MM-DD (must have ended).
    pub through_day: String,
}

/// `tallyq payment` arguments.
#[derive(Debug, Args)]
pub struct PaymentArgs {
    /// Tenant id.
    pub tenant: String,
    /// Your unique id for this payment.
    pub payment_id: String,
    /// Amount in minor units (fen for CNY).
    pub amount_minor: i64,
    /// Currency (the plan's).
    #[arg(long, default_value = "CNY")]
    pub currency: String,
    /// Note.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub note: String,
}

/// Prints a monthly statement: one line per day, the totals, payments and balance.
pub(super) async fn statement(client: &Client, args: &StatementArgs) -> Result<()> {
    let s = call!(
        client,
        billing,
        get_statement,
        pb::GetStatementRequest {
            tenant: args.tenant.clone().unwrap_or_default(),
            month: args.month.clone(),
        }
    );
    print_statement(&s);
    Ok(())
}

/// Prints a statement: one line per day, the totals, payments and balance.
pub(super) fn print_statement(s: &pb::Statement) {
    println!("statement {} {} ({})", s.tenant, s.month, s.currency);
    println!("day\tmessage_units\tfree_units\ttopic_days\tstorage_mgib_h\tamount");
    for d in &s.days {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            d.day,
            d.message_units,
            d.free_units_applied,
            d.topic_days,
            d.storage_milli_gib_hours,
            format_minor(d.amount_minor)
        );
    }
    println!(
        "total\t{}\t{}\t{}\t\t{}",
        s.message_units,
        s.free_units_applied,
        s.topic_days,
        format_minor(s.charges_minor)
    );
    println!(
        "payments {}; balance now {} {}",
        format_minor(s.payments_minor),
        format_minor(s.balance_minor),
        s.currency
    );
    if let Some(f) = &s.final_statement {
        println!(
            "final statement: {} ({})",
            format_minor(f.amount_minor),
            f.note
        );
    }
}

/// Prints a tenant's account on one line.
pub(super) async fn account(client: &Client, args: &AccountArgs) -> Result<()> {
    let a = call!(
        client,
        billing,
        get_account,
        pb::GetAccountRequest {
            tenant: args.tenant.clone().unwrap_or_default(),
        }
    );
    println!(
        "{}\tbalance={} {}\tcharges={}\tpayments={}\toldest_unpaid_due_ms={}\tstatus={}{}\tsettled_through={}",
        a.tenant,
        format_minor(a.balance_minor),
        a.currency,
        format_minor(a.charges_minor),
        format_minor(a.payments_minor),
        a.oldest_unpaid_due_unix_ms,
        status_name(a.status),
        if a.status_reason.is_empty() { String::new() } else { format!(" ({})", a.status_reason) },
        a.settled_through
    );
    Ok(())
}

/// Prints the tenant's live usage, one line per day and dimension.
pub(super) async fn usage(client: &Client) -> Result<()> {
    let usage = call!(client, admin, get_usage, pb::GetUsageRequest {});
    println!("settled through {:?}", usage.settled_through);
    for l in usage.lines {
        println!(
            "{}\t{}\t{}\tmessage_units={}\tproduced={}\tdelivered={}\tredelivered={}\tstorage_mgib_h={}",
            l.day, l.dimension, l.name, l.message_units, l.produced_units,
            l.delivered_units, l.redelivered_units, l.storage_milli_gib_hours
        );
    }
    Ok(())
}

/// Settles every ended day through the given day.
pub(super) async fn settle(client: &Client, args: &SettleArgs) -> Result<()> {
    let r = call!(
        client,
        billing,
        settle,
        pb::SettleRequest {
            through_day: args.through_day.clone(),
        }
    );
    println!(
        "settled {} tenant-days, {} ledger entries written",
        r.tenant_days, r.entries_written
    );
    Ok(())
}

/// Records a payment and prints its ledger sequence and the new balance.
pub(super) async fn payment(client: &Client, args: &PaymentArgs) -> Result<()> {
    let r = call!(
        client,
        operator,
        record_payment,
        pb::RecordPaymentRequest {
            tenant: args.tenant.clone(),
            payment_id: args.payment_id.clone(),
            amount_minor: args.amount_minor,
            currency: args.currency.clone(),
            note: args.note.clone(),
        }
    );
    println!(
        "payment at ledger sequence {}{}; balance {}",
        r.sequence,
        if r.duplicate {
            " (recorded before)"
        } else {
            ""
        },
        format_minor(r.balance_minor)
    );
    Ok(())
}
