//! Concurrency helpers: lock helpers and the boxed future of the ports.
//!
//! A panic while a std lock is held poisons it; the state the
//! broker keeps under its locks is always left consistent between statements
//! (every change is a single assignment or a committed write), so a poisoned
//! lock is taken over rather than turned into a second panic.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock` that takes over a poisoned lock.
pub trait MutexExt<T> {
    /// Locks, ignoring poisoning.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `RwLock::read` / `write` that take over a poisoned lock.
pub trait RwLockExt<T> {
    /// Read-locks, ignoring poisoning.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// Write-locks, ignoring poisoning.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A boxed, sendable future: what an object-safe async port method returns
/// (`Arc<dyn Port>`) without the `async-trait` crate.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
