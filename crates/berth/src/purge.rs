//! `storage.maintenance.uploadpurging`: removes upload sessions abandoned longer than `age`,
//! every `interval`, like registry:2 (which purges by start time too).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_meta::ops::Inventory;
use berth_meta::MetaStore;
use berth_storage::Backend;

use crate::config::PurgeSettings;

/// Sessions removed per pass at most (the next pass continues).
const PER_PASS: usize = 1000;

/// Starts the purge loop on the current runtime.
pub fn spawn(
    s: PurgeSettings,
    inventory: Arc<dyn Inventory>,
    meta: Arc<dyn MetaStore>,
    storage: Arc<dyn Backend>,
) {
    tokio::spawn(async move {
        // Like registry:2, the first pass waits a little so startup is not slowed down.
        tokio::time::sleep(Duration::from_secs(60).min(s.interval)).await;
        loop {
            purge_once(&s, inventory.as_ref(), meta.as_ref(), storage.as_ref()).await;
            tokio::time::sleep(s.interval).await;
        }
    });
}

/// One pass; returns how many sessions were removed (or would be, in dry-run mode).
pub async fn purge_once(
    s: &PurgeSettings,
    inventory: &dyn Inventory,
    meta: &dyn MetaStore,
    storage: &dyn Backend,
) -> usize {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cutoff = now.saturating_sub(s.age.as_secs()) as i64;
    let stale = match inventory.stale_uploads(cutoff, PER_PASS).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "upload purge: cannot list stale sessions");
            return 0;
        }
    };
    if s.dry_run {
        for id in &stale {
            tracing::info!(upload = %id, "upload purge (dry run): would remove session");
        }
        return stale.len();
    }
    let mut removed = 0;
    for id in &stale {
        let gone = meta.delete_upload(id).await;
        let aborted = storage.upload_abort(id).await;
        match (gone, aborted) {
            (Ok(_), Ok(_)) => removed += 1,
            (m, st) => {
                tracing::warn!(upload = %id, meta = ?m.err(), storage = ?st.err(), "upload purge: cannot remove session")
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "upload purge: removed abandoned sessions");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::sqlite::SqliteStore;
    use berth_meta::{UploadSession, UploadSessions};
    use berth_oci::{RepoName, UploadId};
    use berth_storage::fs::FsBackend;
    use berth_storage::UploadStore;

    #[tokio::test]
    async fn removes_only_sessions_older_than_age() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsBackend::new(dir.path()).unwrap();
        let meta = SqliteStore::open_temporary().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let old = UploadId::from_random([1; 16]);
        let fresh = UploadId::from_random([2; 16]);
        for (id, started_at) in [(&old, now - 7200), (&fresh, now - 10)] {
            storage.upload_create(id).await.unwrap();
            let session = UploadSession {
                id: id.clone(),
                repo: RepoName::parse("a").unwrap(),
                started_at,
                hash_state: Vec::new(),
            };
            meta.create_upload(&session).await.unwrap();
        }
        let mut s = PurgeSettings {
            age: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
            dry_run: true,
        };
        assert_eq!(purge_once(&s, &meta, &meta, &storage).await, 1);
        assert!(
            meta.get_upload(&old).await.unwrap().is_some(),
            "dry run removes nothing"
        );
        s.dry_run = false;
        assert_eq!(purge_once(&s, &meta, &meta, &storage).await, 1);
        assert!(meta.get_upload(&old).await.unwrap().is_none());
        assert_eq!(storage.upload_size(&old).await.unwrap(), None);
        assert!(meta.get_upload(&fresh).await.unwrap().is_some());
        assert_eq!(storage.upload_size(&fresh).await.unwrap(), Some(0));
    }
}
