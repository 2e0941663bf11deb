//! Per-upload async locks shared by the backends: appends, commits and aborts of one upload hold
//! its lock, so they never interleave within one process. (Across processes, each backend has
//! its own guard: the filesystem serves one root per process; S3 uses conditional writes.)

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
