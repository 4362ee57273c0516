//! `tallyq statement`: a tenant's monthly statement.

use anyhow::Result;

use tallyq::billing::pricing::format_minor;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

pub(super) async fn statement(client: &Client, tenant: &str, month: &str) -> Result<()> {
    let s = call!(
        client,
        billing,
        get_statement,
        pb::GetStatementRequest {
            tenant: tenant.to_string(),
            month: month.to_string(),
        }
    );
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
    Ok(())
}
