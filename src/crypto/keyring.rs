//! [`Keyring`]: every live tenant's unwrapped keys in memory, so the produce
//! and consume paths never unwrap a key per request. Loaded at start-up from
//! the wrapped keys in the store; a new tenant's key is generated and stored
//! wrapped in the commit that creates the tenant; termination deletes it in
//! the commit that marks the tenant terminated, then evicts it here.
//!
//! The server has a data key of its own, wrapped like a tenant's: its HMAC
//! keys the operator's cross-tenant device bindings. It doubles as the check
//! of the master key: a store whose server key does not unwrap was written
//! under another master key, and the broker refuses to start (before it
//! writes anything with the wrong key).

use std::sync::Arc;

use dashmap::DashMap;
// Looked up on every data-plane request: foldhash, not SipHash.
use foldhash::fast::RandomState;

use super::{DataKey, MasterKey, TenantKeys};
use crate::storage::{StorageError, Store, WriteSet};

/// The owner name the server's own key is wrapped for (not a valid tenant id,
/// so it never collides with one).
const SERVER: &str = "#server";

/// Why the keyring cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The store's keys were wrapped by another master key.
    #[error(
        "the master key does not open this data dir's keys: it was written with another master \
         key (check master_key_file); refusing to start so nothing is written with the wrong key"
    )]
    WrongMasterKey,
    /// A stored wrapped key is damaged or the server key is missing while
    /// tenant keys exist.
    #[error("the stored key of {owner} cannot be unwrapped: {reason}")]
    Damaged {
        /// Whose key.
        owner: String,
        /// What is wrong.
        reason: String,
    },
    /// The store holds tenants from before encryption at rest.
    #[error(
        "this data dir holds tenants stored without encryption at rest (tenant '{0}' has no \
         data key); it cannot be served by this version"
    )]
    Unencrypted(String),
    /// Reading the keys failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The unwrapped keys of every live tenant, and the server's.
pub struct Keyring {
    master: Arc<MasterKey>,
    server: Arc<TenantKeys>,
    /// The server key wrapped, stored with every write that depends on it.
    server_wrapped: Vec<u8>,
    tenants: DashMap<String, Arc<TenantKeys>, RandomState>,
}

impl Keyring {
    /// Checks `master` against the store and unwraps every stored key.
    /// Reads only: a fresh store's server key is generated now and stored by
    /// the first write that depends on it ([`Keyring::stage_server_key`]).
    pub fn open(store: &Store, master: Arc<MasterKey>) -> Result<Keyring, KeyringError> {
        let wrapped_tenants = store.wrapped_data_keys()?;
        let (server_key, server_wrapped) = match store.wrapped_server_key()? {
            Some(wrapped) => {
                let key = master
                    .unwrap_key(SERVER, &wrapped)
                    .map_err(|_| KeyringError::WrongMasterKey)?;
                (key, wrapped)
            }
            None => {
                if let Some((owner, _)) = wrapped_tenants.first() {
                    return Err(KeyringError::Damaged {
                        owner: owner.clone(),
                        reason: "the server key it is checked with is missing".into(),
                    });
                }
                let key = DataKey::generate();
                let wrapped = master.wrap(SERVER, &key);
                (key, wrapped)
            }
        };
        let tenants = DashMap::default();
        for (owner, wrapped) in wrapped_tenants {
            let key = master
                .unwrap_key(&owner, &wrapped)
                .map_err(|e| KeyringError::Damaged {
                    owner: owner.clone(),
                    reason: e.to_string(),
                })?;
            tenants.insert(owner.clone(), Arc::new(TenantKeys::derive(&owner, &key)));
        }
        for id in store.live_tenant_ids()? {
            if !tenants.contains_key(&id) {
                return Err(KeyringError::Unencrypted(id));
            }
        }
        Ok(Keyring {
            server: Arc::new(TenantKeys::derive(SERVER, &server_key)),
            master,
            server_wrapped,
            tenants,
        })
    }

    /// The keys of a live tenant (`None` once it is terminated: its key is
    /// destroyed).
    pub fn tenant(&self, id: &str) -> Option<Arc<TenantKeys>> {
        self.tenants.get(id).map(|k| k.value().clone())
    }

    /// The server's keys (device bindings).
    pub fn server(&self) -> &TenantKeys {
        &self.server
    }

    /// Adds the server key, wrapped, to `writes` (idempotent; part of every
    /// write whose rows depend on it).
    pub fn stage_server_key(&self, writes: &mut WriteSet) {
        writes.put_server_key(&self.server_wrapped);
    }

    /// A new random data key for tenant `id`, stored wrapped in `writes`
    /// (with the server key). Call [`Keyring::insert`] once it committed.
    pub fn new_tenant_key(&self, id: &str, writes: &mut WriteSet) -> Arc<TenantKeys> {
        let key = DataKey::generate();
        writes.put_data_key(id, &self.master.wrap(id, &key));
        self.stage_server_key(writes);
        Arc::new(TenantKeys::derive(id, &key))
    }

    /// Caches a tenant's keys once the write storing them committed.
    pub fn insert(&self, id: &str, keys: Arc<TenantKeys>) {
        self.tenants.insert(id.to_string(), keys);
    }

    /// Crypto-shredding: deletes tenant `id`'s wrapped key in `writes`. Call
    /// [`Keyring::evict`] once it committed.
    pub fn shred(&self, id: &str, writes: &mut WriteSet) {
        writes.delete_data_key(id);
    }

    /// Forgets tenant `id`'s keys (after its shredding committed).
    pub fn evict(&self, id: &str) {
        self.tenants.remove(id);
    }
}

/// Master-key rotation on a stopped data dir: checks `old` like a start-up
/// does, then returns one write that rewraps the server key and every data
/// key under `new` (committed as one atomic batch) and how many keys it
/// rewraps. The data keys themselves do not change, so nothing else is
/// rewritten.
pub fn rewrap_all(
    store: &Store,
    old: Arc<MasterKey>,
    new: &MasterKey,
) -> Result<(WriteSet, usize), KeyringError> {
    let ring = Keyring::open(store, old.clone())?;
    let mut writes = WriteSet::new();
    let server = old
        .unwrap_key(SERVER, &ring.server_wrapped)
        .map_err(|_| KeyringError::WrongMasterKey)?;
    writes.put_server_key(&new.wrap(SERVER, &server));
    let mut count = 1;
    for (owner, wrapped) in store.wrapped_data_keys()? {
        let key = old
            .unwrap_key(&owner, &wrapped)
            .map_err(|e| KeyringError::Damaged {
                owner: owner.clone(),
                reason: e.to_string(),
            })?;
        writes.put_data_key(&owner, &new.wrap(&owner, &key));
        count += 1;
    }
    Ok((writes, count))
}
