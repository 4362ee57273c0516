//! Concurrent-stream slots: a permit held for as long as a stream is open.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Held by an open stream; dropping it frees the tenant's stream slot.
pub struct StreamPermit {
    pub(super) open: Arc<AtomicU32>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}
