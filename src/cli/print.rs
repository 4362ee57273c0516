//! How the CLI prints tenants, keys, topics and subscriptions: one
//! tab-separated line each.

use tallyq::proto::v1 as pb;

/// A tenant status as the CLI prints it.
pub(super) fn status_name(status: i32) -> &'static str {
    match pb::TenantStatus::try_from(status) {
        Ok(pb::TenantStatus::Active) => "active",
        Ok(pb::TenantStatus::Suspended) => "suspended",
        Ok(pb::TenantStatus::Terminated) => "terminated",
        _ => "unknown",
    }
}

/// Prints a tenant: id, plan, status (with its reason), names, quota overrides.
pub(super) fn print_tenant(t: &pb::Tenant) {
    let mut overrides: Vec<String> = t
        .quota_overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    overrides.sort();
    let reason = if t.status_reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.status_reason)
    };
    println!(
        "{}\tplan={}\tstatus={}{reason}\tname={:?}\temail={:?}\toverrides={}",
        t.id,
        t.plan,
        status_name(t.status),
        t.display_name,
        t.contact_email,
        overrides.join(",")
    );
}

fn scope_names(scopes: &[i32]) -> String {
    scopes
        .iter()
        .map(|s| match pb::Scope::try_from(*s) {
            Ok(pb::Scope::Produce) => "produce",
            Ok(pb::Scope::Consume) => "consume",
            Ok(pb::Scope::Manage) => "manage",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints an API key as [`key_line`] writes it.
pub(super) fn print_key(k: &pb::ApiKey) {
    println!("{}", key_line(k));
}

/// An API key on one line: id, tenant, scopes, topics (`*` for all), revoked, description.
pub(super) fn key_line(k: &pb::ApiKey) -> String {
    format!(
        "{}\ttenant={}\tscopes={}\ttopics={}\trevoked={}\t{:?}",
        k.id,
        k.tenant,
        scope_names(&k.scopes),
        if k.topics.is_empty() {
            "*".to_string()
        } else {
            k.topics.join(",")
        },
        k.revoked,
        k.description
    )
}

/// Prints a topic with its settings and figures.
pub(super) fn print_topic(t: &pb::Topic) {
    let c = t.config.unwrap_or_default();
    let s = t.stats.unwrap_or_default();
    let overflow = if c.overflow_policy == pb::OverflowPolicy::RefuseProduce as i32 {
        "refuse"
    } else {
        "reclaim"
    };
    println!(
        "{}\tmessages={}\tbytes={}\toffsets={}..{}\texpiry={}s\tmax_bytes={}\toverflow={overflow}\tdedup_window={}s\texpired={}\treclaimed={}",
        t.name, s.messages, s.bytes, s.first_offset, s.next_offset, c.message_expiry_seconds,
        c.max_bytes, c.dedup_window_seconds, s.expired_messages, s.reclaimed_messages
    );
}

/// Prints a subscription with its settings and figures.
pub(super) fn print_sub(s: &pb::Subscription) {
    let c = s.config.clone().unwrap_or_default();
    let st = s.stats.unwrap_or_default();
    println!(
        "{}/{}\tlock={}s\tmax_attempts={}\tdead_letter_topic={:?}\tbacklog={}\tin_flight={}\tnext_offset={}\tdead_lettered={}",
        s.topic, s.name, c.lock_seconds, c.max_delivery_attempts, c.dead_letter_topic,
        st.backlog, st.in_flight, st.next_offset, st.dead_lettered
    );
}
