//! Who is calling: the operator, the billing reader, or a tenant's API key
//! with its scopes and topic allow-list.

use std::sync::Arc;

use crate::error::{Error, Result};

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Produce messages.
    Produce = 1,
    /// Consume, fetch, ack, nack, seek.
    Consume = 2,
    /// Manage topics and subscriptions.
    Manage = 3,
}

impl Scope {
    /// From the stored / wire number.
    pub fn from_i32(value: i32) -> Option<Scope> {
        match value {
            1 => Some(Scope::Produce),
            2 => Some(Scope::Consume),
            3 => Some(Scope::Manage),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Produce => "produce",
            Scope::Consume => "consume",
            Scope::Manage => "manage",
        }
    }
}

/// The tenant side of an authenticated request: the key's tenant and rights.
#[derive(Debug, Clone)]
pub struct TenantKey {
    /// The tenant every name in the request belongs to.
    pub tenant: String,
    /// The key's id (for logs and audit; never the secret).
    pub key_id: String,
    pub(super) scopes: Vec<Scope>,
    pub(super) topics: Vec<String>,
}

impl TenantKey {
    /// Refuses with PERMISSION_DENIED unless the key has `scope`. (Which RPC
    /// needs which scope is decided once, in `access.rs`.)
    pub(super) fn require_scope(&self, scope: Scope) -> Result<()> {
        if !self.scopes.contains(&scope) {
            return Err(Error::PermissionDenied(format!(
                "this API key lacks the '{}' scope",
                scope.name()
            )));
        }
        Ok(())
    }

    /// True when the key's allow-list (if any) names `topic`.
    pub fn may_touch(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|t| t == topic)
    }

    /// True when the key is limited to some topics.
    pub fn has_allow_list(&self) -> bool {
        !self.topics.is_empty()
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The operator credential.
    Operator,
    /// The billing-reader credential: reads every tenant's billing, changes nothing.
    BillingReader,
    /// A tenant's API key.
    Tenant(Arc<TenantKey>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_scope_and_allow_list_are_enforced() {
        let key = TenantKey {
            tenant: "acme".into(),
            key_id: "k".into(),
            scopes: vec![Scope::Produce],
            topics: vec!["t1".into()],
        };
        assert!(key.require_scope(Scope::Produce).is_ok());
        assert!(key.require_scope(Scope::Consume).is_err());
        assert!(key.require_topics(["t1"]).is_ok());
        assert!(key.require_topics(["t1", "t2"]).is_err());
        assert!(key.has_allow_list());
    }
}
