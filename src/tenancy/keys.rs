//! API keys: `tq_<tenant>_<secret>`, stored only as their SHA-256; create,
//! list, revoke, and authenticate a bearer token to a [`Principal`].

use std::sync::Arc;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::tenants::refuse_terminated;
use super::{validate_resource_name, Principal, Scope, Tenancy, TenantKey, TenantStatus};
use crate::error::{Error, Result};
use crate::storage::records::ApiKeyRecord;
use crate::storage::{keys, WriteSet};

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

/// A new API key: its record and the secret, which is never shown again.
pub struct CreatedKey {
    /// What is stored.
    pub record: ApiKeyRecord,
    /// `tq_<tenant>_<secret>`.
    pub secret: String,
}

pub(super) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Tenancy {
    /// Makes the authentication cache agree with `key`: an active key
    /// authenticates by its hash, a revoked one no longer does.
    pub(super) fn index_key(&self, key: &ApiKeyRecord) {
        let Ok(hash) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) else {
            return;
        };
        if key.revoked {
            self.active_keys_by_hash.remove(&hash);
        } else {
            self.active_keys_by_hash.insert(
                hash,
                Arc::new(TenantKey {
                    tenant: key.tenant.clone(),
                    key_id: key.id.clone(),
                    scopes: key
                        .scopes
                        .iter()
                        .filter_map(|s| Scope::from_i32(*s))
                        .collect(),
                    topics: key.topics.clone(),
                }),
            );
        }
    }

    /// Drops a key whose record was deleted from both caches.
    pub(super) fn forget_key(&self, key: &ApiKeyRecord) {
        if let Ok(hash) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) {
            self.active_keys_by_hash.remove(&hash);
        }
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
            .ok_or_else(|| Error::Unauthenticated("invalid or revoked API key".into()))?;
        match self.tenants.get(&key.tenant).map(|t| t.status) {
            Some(status) if TenantStatus::from_i32(status) != TenantStatus::Terminated => {
                Ok(Principal::Tenant(key))
            }
            _ => Err(Error::Unauthenticated("invalid or revoked API key".into())),
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
        let mut scope_values: Vec<i32> = scopes.iter().map(|s| *s as i32).collect();
        scope_values.sort_unstable();
        scope_values.dedup();
        let record = ApiKeyRecord {
            id,
            tenant: tenant.to_string(),
            secret_hash: sha256(&secret).to_vec(),
            scopes: scope_values,
            topics,
            description,
            created_ms: self.clock.now_ms(),
            revoked: false,
        };
        let mut writes = WriteSet::new();
        writes.put(keys::api_key(&record.id), &record);
        self.commit_audited(
            writes,
            "operator",
            "key.create",
            tenant,
            format!(
                "key {} scopes {:?} topics {:?}",
                record.id, record.scopes, record.topics
            ),
        )
        .await?;
        self.index_key(&record);
        self.keys.insert(record.id.clone(), record.clone());
        Ok(CreatedKey { record, secret })
    }

    /// A tenant's keys (operator), never their secrets.
    pub fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
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
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord> {
        let _guard = self.write_lock.lock().await;
        let mut record = self
            .keys
            .get(id)
            .map(|k| k.clone())
            .ok_or_else(|| Error::not_found("API key", id))?;
        record.revoked = true;
        let mut writes = WriteSet::new();
        writes.put(keys::api_key(id), &record);
        self.commit_audited(
            writes,
            "operator",
            "key.revoke",
            &record.tenant,
            format!("key {id}"),
        )
        .await?;
        self.index_key(&record);
        self.keys.insert(record.id.clone(), record.clone());
        Ok(record)
    }
}
