//! Who may call which RPC: the one table of SPEC §3 "Scopes, whole".
//!
//! Every RPC of the four tallyq services has one row in [`RULES`]; the auth
//! interceptor (`api/auth.rs`) looks the called method up and refuses the
//! caller before any handler runs ([`Principal::authorize`]). A method with no
//! row is refused (fail closed), so a new RPC is reachable only once someone
//! decided who may call it. The topic half of a key's rights (its allow-list)
//! is checked on the topics a request names ([`TenantKey::require_topics`])
//! and filters what a listing shows ([`TenantKey::may_touch`]).
//!
//! - `produce` reaches Produce and ProduceStream; `consume` reaches Consume,
//!   Fetch, Ack, Nack and Seek: the data plane only.
//! - `manage` reaches the Admin service (topics, subscriptions, quotas, usage,
//!   export) and the tenant's billing reads (account, statement, its ledger).
//! - Billing reads cover the whole tenant, so a key limited to some topics
//!   cannot make them, whatever its scopes.
//! - The Operator service and Settle need the operator credential; the
//!   billing-reader credential reaches the billing reads alone.

use super::principal::{Principal, Scope, TenantKey};
use super::Tenancy;
use crate::error::{Error, Result};

/// What a caller needs to reach one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A tenant API key with this scope (the request's topics on its allow-list).
    Scope(Scope),
    /// A billing read: the operator or billing reader (any tenant), or a
    /// tenant key with `manage` and no topic allow-list (its own tenant).
    BillingRead,
    /// The operator credential.
    Operator,
}

/// Every RPC of `tallyq.v1` and what it needs: (service, method, need).
pub const RULES: &[(&str, &str, Need)] = &[
    ("Broker", "Produce", Need::Scope(Scope::Produce)),
    ("Broker", "ProduceStream", Need::Scope(Scope::Produce)),
    ("Broker", "Consume", Need::Scope(Scope::Consume)),
    ("Broker", "Fetch", Need::Scope(Scope::Consume)),
    ("Broker", "Ack", Need::Scope(Scope::Consume)),
    ("Broker", "Nack", Need::Scope(Scope::Consume)),
    ("Broker", "Seek", Need::Scope(Scope::Consume)),
    ("Admin", "ExportData", Need::Scope(Scope::Manage)),
    ("Admin", "GetUsage", Need::Scope(Scope::Manage)),
    ("Admin", "GetQuota", Need::Scope(Scope::Manage)),
    ("Admin", "CreateTopic", Need::Scope(Scope::Manage)),
    ("Admin", "GetTopic", Need::Scope(Scope::Manage)),
    ("Admin", "ListTopics", Need::Scope(Scope::Manage)),
    ("Admin", "UpdateTopic", Need::Scope(Scope::Manage)),
    ("Admin", "DeleteTopic", Need::Scope(Scope::Manage)),
    ("Admin", "CreateSubscription", Need::Scope(Scope::Manage)),
    ("Admin", "GetSubscription", Need::Scope(Scope::Manage)),
    ("Admin", "ListSubscriptions", Need::Scope(Scope::Manage)),
    ("Admin", "UpdateSubscription", Need::Scope(Scope::Manage)),
    ("Admin", "DeleteSubscription", Need::Scope(Scope::Manage)),
    ("Billing", "Settle", Need::Operator),
    ("Billing", "ListLedgerEntries", Need::BillingRead),
    ("Billing", "GetStatement", Need::BillingRead),
    ("Billing", "GetAccount", Need::BillingRead),
    ("Operator", "CreateTenant", Need::Operator),
    ("Operator", "GetTenant", Need::Operator),
    ("Operator", "ListTenants", Need::Operator),
    ("Operator", "UpdateTenant", Need::Operator),
    ("Operator", "SuspendTenant", Need::Operator),
    ("Operator", "ResumeTenant", Need::Operator),
    ("Operator", "TerminateTenant", Need::Operator),
    ("Operator", "RecordPayment", Need::Operator),
    ("Operator", "CreateApiKey", Need::Operator),
    ("Operator", "ListApiKeys", Need::Operator),
    ("Operator", "RevokeApiKey", Need::Operator),
    ("Operator", "AdvanceClock", Need::Operator),
    ("Operator", "GetClock", Need::Operator),
    ("Operator", "BindDevice", Need::Operator),
    ("Operator", "UnbindDevice", Need::Operator),
    ("Operator", "ListDevices", Need::Operator),
    ("Operator", "ListAuditEvents", Need::Operator),
    ("Operator", "SetMaintenance", Need::Operator),
    ("Operator", "ExportTenantForMove", Need::Operator),
    ("Operator", "ImportTenant", Need::Operator),
    ("Operator", "FinishTenantMove", Need::Operator),
];

/// The package every service of [`RULES`] is in.
const PACKAGE: &str = "tallyq.v1.";

/// What the RPC at `path` (`/tallyq.v1.Broker/Produce`) needs; `None` for a
/// method with no row, which is then refused.
pub fn need_of(path: &str) -> Option<Need> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    let service = service.strip_prefix(PACKAGE)?;
    RULES
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, _, need)| *need)
}

impl Principal {
    /// Refuses with PERMISSION_DENIED unless this caller may make a call that
    /// needs `need`.
    pub fn authorize(&self, need: Need) -> Result<()> {
        let denied = |why: &str| Err(Error::PermissionDenied(why.into()));
        match (self, need) {
            (Principal::Operator, Need::Operator | Need::BillingRead) => Ok(()),
            (Principal::Operator, Need::Scope(_)) => {
                denied("the operator credential cannot act as a tenant; use a tenant API key")
            }
            (Principal::BillingReader, Need::BillingRead) => Ok(()),
            (Principal::BillingReader, _) => denied(
                "the billing-reader credential may only read ledgers, statements and accounts",
            ),
            (Principal::Tenant(_), Need::Operator) => {
                denied("this call needs the operator credential")
            }
            (Principal::Tenant(key), Need::Scope(scope)) => key.require_scope(scope),
            (Principal::Tenant(key), Need::BillingRead) => {
                key.require_scope(Scope::Manage)?;
                if key.has_allow_list() {
                    return denied(
                        "this API key is limited to some topics; billing reads cover the whole \
                         tenant and need a key without a topic list",
                    );
                }
                Ok(())
            }
        }
    }
}

impl Tenancy {
    /// True when `id` is a tenant of this broker (any status): what a
    /// credential's `tq_<tenant>_` prefix may claim for failed-authentication
    /// counting. One map lookup, no copy (it runs on every request).
    pub fn has_tenant(&self, id: &str) -> bool {
        self.tenants.contains_key(id)
    }
}

impl TenantKey {
    /// Refuses with PERMISSION_DENIED unless every topic in `topics` is on
    /// the key's allow-list (always true for a key without one).
    pub fn require_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for topic in topics {
            if !self.may_touch(topic) {
                return Err(Error::PermissionDenied(format!(
                    "this API key may not use topic '{topic}'"
                )));
            }
        }
        Ok(())
    }

    /// Whether a usage line (or any per-slice figure) is visible to the key:
    /// `topic` is the line's topic, `None` for a tenant total or a device
    /// line, which add up every topic and so are hidden from a key limited
    /// to some topics.
    pub fn may_see_slice(&self, topic: Option<&str>) -> bool {
        match topic {
            Some(topic) => self.may_touch(topic),
            None => !self.has_allow_list(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_and_unknown_methods_have_no_rule() {
        assert_eq!(
            need_of("/tallyq.v1.Broker/Produce"),
            Some(Need::Scope(Scope::Produce))
        );
        assert_eq!(need_of("/tallyq.v1.Billing/Settle"), Some(Need::Operator));
        assert_eq!(need_of("/tallyq.v1.Broker/Nope"), None);
        assert_eq!(need_of("/other.v1.Broker/Produce"), None);
        assert_eq!(need_of("garbage"), None);
    }

    #[test]
    fn every_rpc_of_the_descriptor_set_has_exactly_one_rule() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut methods = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push((service.name().to_string(), method.name().to_string()));
                }
            }
        }
        for (service, method) in &methods {
            let rows = RULES
                .iter()
                .filter(|(s, m, _)| s == service && m == method)
                .count();
            assert_eq!(rows, 1, "{service}/{method} needs one access rule");
        }
        assert_eq!(
            RULES.len(),
            methods.len(),
            "no rule for a method that does not exist"
        );
    }
}
