//! API keys: `tq_<tenant>_<secret>`, stored only as their SHA-256; create,
//! list, revoke, and authenticate a bearer token to a [`Principal`].

use std::sync::Arc;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::tenants::refuse_terminated;
use super::{validate_resource_name, Principal, Scope, Tenancy, TenantKey, TenantStatus};
use crate::error::{Error, Result};
use crate::storage::WriteSet;

/// What every credential that authenticates nothing is told: missing
/// tenants, wrong secrets, revoked keys and terminated tenants alike, so a
/// caller learns nothing about which. The router (`shard::nginx`) answers a
/// key of a tenant it does not route with the same words.
pub const INVALID_API_KEY_MESSAGE: &str = "invalid or revoked API key";

/// Length of an API key's random part (base62: ~5.95 bits a character).
const SECRET_CHARS: usize = 32;

/// An API key of a tenant: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Public key id (`key_...`), used to list and revoke.
    pub id: String,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// SHA-256 of the whole secret string `tq_<tenant>_<secret>`.
    pub secret_hash: [u8; 32],
    /// What the key may do, sorted by their wire numbers, no repeats.
    pub scopes: Vec<Scope>,
    /// Topic allow-list; empty means every topic of the tenant.
    pub topics: Vec<String>,
    /// Free-form description.
    pub description: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// A revoked key no longer authenticates (it is kept for the listing).
    pub revoked: bool,
}

/// A new API key and its secret, which is never shown again.
pub struct CreatedKey {
    /// The key as stored.
    pub key: ApiKey,
    /// `tq_<tenant>_<secret>`.
    pub secret: String,
}

pub(super) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Tenancy {
    /// Makes the authentication cache agree with `key`: an active key
    /// authenticates by its hash, a revoked one no longer does.
    pub(super) fn index_key(&self, key: &ApiKey) {
        if key.revoked {
            self.active_keys_by_hash.remove(&key.secret_hash);
        } else {
            self.active_keys_by_hash.insert(
                key.secret_hash,
                Arc::new(TenantKey {
                    tenant: key.tenant.clone(),
                    key_id: key.id.clone(),
                    scopes: key.scopes.clone(),
                    topics: key.topics.clone(),
                }),
            );
        }
    }

    /// Drops a key that was deleted from both caches.
    pub(super) fn forget_key(&self, key: &ApiKey) {
        self.active_keys_by_hash.remove(&key.secret_hash);
        self.keys.remove(&key.id);
    }

    /// Resolves a bearer token to a principal; UNAUTHENTICATED when missing,
    /// unknown, revoked, or its tenant is terminated.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        let token = token.ok_or_else(|| {
            Error::Unauthenticated(
                "missing credentials: send 'authorization: Bearer <API key>' metadata".into(),
            )
        })?;
        let hash = sha256(token);
        if hash == self.operator_hash {
            return Ok(Principal::Operator);
        }
        if hash == self.billing_reader_hash {
            return Ok(Principal::BillingReader);
        }
        let key = self
            .active_keys_by_hash
            .get(&hash)
            .map(|k| k.value().clone())
            .ok_or_else(|| self.unknown_key(&hash))?;
        match self.tenants.get(&key.tenant).map(|t| t.status) {
            Some(status) if status != TenantStatus::Terminated => Ok(Principal::Tenant(key)),
            _ => Err(Error::Unauthenticated(INVALID_API_KEY_MESSAGE.into())),
        }
    }

    /// Issues an API key for a tenant (operator). The secret is returned once.
    pub async fn create_key(
        &self,
        tenant: &str,
        scopes: Vec<Scope>,
        topics: Vec<String>,
        description: String,
    ) -> Result<CreatedKey> {
        if scopes.is_empty() {
            return Err(Error::invalid(
                "an API key needs at least one scope: produce, consume or manage",
            ));
        }
        for topic in &topics {
            validate_resource_name("topic", topic)?;
        }
        if description.len() > 200 {
            return Err(Error::invalid("description may be at most 200 bytes"));
        }
        let _guard = self.write_lock.lock().await;
        self.refuse_moving(tenant)?;
        let status = self
            .tenants
            .get(tenant)
            .map(|t| t.status)
            .ok_or_else(|| Error::not_found("tenant", tenant))?;
        refuse_terminated(tenant, status)?;
        let (secret, id) = {
            let mut rng = rand::rng();
            (
                format!(
                    "tq_{tenant}_{}",
                    Alphanumeric.sample_string(&mut rng, SECRET_CHARS)
                ),
                format!("key_{}", Alphanumeric.sample_string(&mut rng, 16)),
            )
        };
        let mut scopes = scopes;
        scopes.sort_unstable_by_key(|s| *s as i32);
        scopes.dedup();
        let key = ApiKey {
            id,
            tenant: tenant.to_string(),
            secret_hash: sha256(&secret),
            scopes,
            topics,
            description,
            created_ms: self.clock.now_ms(),
            revoked: false,
        };
        let mut writes = WriteSet::new();
        writes.put_api_key(&key, self.keyring.tenant(&key.tenant).as_deref());
        // The entry names scopes by their wire numbers, as it always has.
        let scope_numbers: Vec<i32> = key.scopes.iter().map(|s| *s as i32).collect();
        self.commit_audited(
            writes,
            "operator",
            "key.create",
            tenant,
            format!(
                "key {} scopes {scope_numbers:?} topics {:?}",
                key.id, key.topics
            ),
        )
        .await?;
        self.index_key(&key);
        self.keys.insert(key.id.clone(), key.clone());
        Ok(CreatedKey { key, secret })
    }

    /// A tenant's keys (operator), never their secrets.
    pub fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        if !self.tenants.contains_key(tenant) {
            return Err(Error::not_found("tenant", tenant));
        }
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.tenant == tenant)
            .map(|k| k.value().clone())
            .collect();
        keys.sort_by_key(|k| k.created_ms);
        Ok(keys)
    }

    /// Revokes a key (operator); it stops authenticating at once.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey> {
        let _guard = self.write_lock.lock().await;
        let mut key = self
            .keys
            .get(id)
            .map(|k| k.clone())
            .ok_or_else(|| Error::not_found("API key", id))?;
        self.refuse_moving(&key.tenant)?;
        key.revoked = true;
        let mut writes = WriteSet::new();
        writes.put_api_key(&key, self.keyring.tenant(&key.tenant).as_deref());
        self.commit_audited(
            writes,
            "operator",
            "key.revoke",
            &key.tenant,
            format!("key {id}"),
        )
        .await?;
        self.index_key(&key);
        self.keys.insert(key.id.clone(), key.clone());
        Ok(key)
    }
}
