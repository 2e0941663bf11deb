//! Per-upload async locks shared by the backends: appends, commits and aborts of one upload hold
//! its lock, so they never interleave within one process. (Across processes, each backend has
//! its own guard: the filesystem serves one root per process; S3 uses conditional writes.)
//!
//! # Decision: this is the only per-upload lock layer
//!
//! The registry used to keep a second map of per-session locks around its append, finish and
//! cancel. One layer is enough, and it is this one, because only this one can hold the promise
//! that appends to one upload never interleave:
//! * it is the backend's contract, for every caller (the backend conformance suite's
//!   `concurrent_appends_one_wins` runs against the backend alone);
//! * it outlives a cancelled request: the filesystem appender's writes on the blocking pool hold
//!   the guard until they end, whereas a lock held by the request's future is released the
//!   moment a client disconnect drops that future, with a write still running;
//! * a registry-level lock covered one process only, while upload sessions continue on any
//!   replica.
//!
//! The registry instead orders its steps against this lock and checks their outcome: appends
//! start at the size storage reports (a racing append fails with `OffsetMismatch`), and a
//! completion re-checks the committed blob's size before linking it (see `berth-registry`'s
//! `uploads` module).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use berth_oci::UploadId;
use tokio::sync::OwnedMutexGuard;

/// Per-upload async locks; an entry lives only while someone holds or awaits it.
#[derive(Default)]
pub(crate) struct UploadLocks {
    map: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>,
}

impl UploadLocks {
    /// Waits for, then holds, the lock of upload `id`.
    pub(crate) async fn lock(self: &Arc<Self>, id: &UploadId) -> UploadGuard {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(id.clone()).or_default())
        };
        UploadGuard {
            guard: Some(mutex.lock_owned().await),
            locks: Arc::clone(self),
            id: id.clone(),
        }
    }
}

/// Holds one upload's lock; on drop, releases it and forgets the entry if nobody else wants it.
pub(crate) struct UploadGuard {
    guard: Option<OwnedMutexGuard<()>>,
    locks: Arc<UploadLocks>,
    id: UploadId,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}
