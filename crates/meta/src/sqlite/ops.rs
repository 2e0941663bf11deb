//! [`Outbox`] and [`Inventory`] on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;
use rusqlite::Connection;

use super::{Context, SqliteStore};
use crate::ops::{Counts, Inventory, Outbox, OutboxEntry};
use crate::{MetaError, Result};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, events: &[(String, Bytes)]) -> Result<()> {
        let events = events.to_vec();
        self.db.write(move |c| enqueue(c, &events)).await
    }

    async fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxEntry>> {
        let endpoint = endpoint.to_owned();
        self.db.read(move |c| pending(c, &endpoint, limit)).await
    }

    async fn ack(&self, endpoint: &str, through_id: i64) -> Result<()> {
        let endpoint = endpoint.to_owned();
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM outbox WHERE endpoint = ?1 AND id <= ?2")
                    .and_then(|mut st| st.execute(rusqlite::params![endpoint, through_id]))
                    .ctx("ack outbox events")
                    .map(drop)
            })
            .await
    }

    async fn pending_count(&self, endpoint: &str) -> Result<u64> {
        let endpoint = endpoint.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT count(*) FROM outbox WHERE endpoint = ?1")
                    .and_then(|mut st| st.query_row([endpoint], |r| r.get::<_, i64>(0)))
                    .ctx("count outbox events")
                    .map(|n| n.max(0) as u64)
            })
            .await
    }

    async fn lease(&self, endpoint: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (endpoint, holder) = (endpoint.to_owned(), holder.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.db
            .write(move |c| {
                let at = now_ms();
                c.prepare_cached(
                    "INSERT INTO outbox_leases (endpoint, holder, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (endpoint) DO UPDATE \
                     SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE outbox_leases.holder = excluded.holder OR outbox_leases.expires_at < ?4",
                )
                .and_then(|mut st| {
                    st.execute(rusqlite::params![
                        endpoint,
                        holder,
                        at.saturating_add(ttl_ms),
                        at
                    ])
                })
                .ctx("take delivery lease")
                .map(|n| n == 1)
            })
            .await
    }

    async fn release(&self, endpoint: &str, holder: &str) -> Result<()> {
        let (endpoint, holder) = (endpoint.to_owned(), holder.to_owned());
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM outbox_leases WHERE endpoint = ?1 AND holder = ?2")
                    .and_then(|mut st| st.execute(rusqlite::params![endpoint, holder]))
                    .ctx("release delivery lease")
                    .map(drop)
            })
            .await
    }
}

fn enqueue(c: &mut Connection, events: &[(String, Bytes)]) -> Result<()> {
    let tx = c.savepoint().ctx("begin enqueue")?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO outbox (endpoint, payload, created_at) VALUES (?1, ?2, ?3)",
            )
            .ctx("prepare enqueue")?;
        let at = now();
        for (endpoint, payload) in events {
            st.execute(rusqlite::params![endpoint, payload.as_ref(), at])
                .ctx("enqueue event")?;
        }
    }
    tx.commit().ctx("commit enqueue")
}

fn pending(c: &Connection, endpoint: &str, limit: usize) -> Result<Vec<OutboxEntry>> {
    let mut st = c
        .prepare_cached("SELECT id, payload FROM outbox WHERE endpoint = ?1 ORDER BY id LIMIT ?2")
        .ctx("prepare pending")?;
    let rows = st
        .query_map(rusqlite::params![endpoint, limit as i64], |r| {
            Ok(OutboxEntry {
                id: r.get(0)?,
                endpoint: endpoint.to_owned(),
                payload: Bytes::from(r.get::<_, Vec<u8>>(1)?),
            })
        })
        .ctx("read pending")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("read pending row")
}

#[async_trait]
impl Inventory for SqliteStore {
    async fn counts(&self) -> Result<Counts> {
        self.db.read(counts).await
    }

    async fn stale_uploads(&self, started_before: i64, limit: usize) -> Result<Vec<UploadId>> {
        self.db
            .read(move |c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT id FROM uploads WHERE started_at < ?1 ORDER BY started_at LIMIT ?2",
                    )
                    .ctx("prepare stale uploads")?;
                let ids = st
                    .query_map(rusqlite::params![started_before, limit as i64], |r| {
                        r.get::<_, String>(0)
                    })
                    .ctx("read stale uploads")?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .ctx("read stale upload row")?;
                ids.iter()
                    .map(|id| {
                        UploadId::parse(id).ok_or_else(|| {
                            MetaError::Database(format!("sqlite: bad upload id {id:?} stored"))
                        })
                    })
                    .collect()
            })
            .await
    }
}

fn counts(c: &Connection) -> Result<Counts> {
    let one = |sql: &str| {
        c.prepare_cached(sql)
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .ctx("count")
            .map(|n| n.max(0) as u64)
    };
    Ok(Counts {
        repositories: one("SELECT count(*) FROM repositories")?,
        manifests: one("SELECT count(*) FROM manifests")?,
        blobs: one("SELECT count(*) FROM blobs")?,
        uploads: one("SELECT count(*) FROM uploads")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetaStore, UploadSession};

    #[tokio::test]
    async fn outbox_is_a_fifo_per_endpoint() {
        let s = SqliteStore::open_temporary().unwrap();
        let ev = |e: &str, p: &str| (e.to_owned(), Bytes::from(p.to_owned()));
        s.enqueue(&[ev("a", "1"), ev("b", "x"), ev("a", "2"), ev("a", "3")])
            .await
            .unwrap();
        assert_eq!(s.pending_count("a").await.unwrap(), 3);
        let first = s.pending("a", 2).await.unwrap();
        let payloads: Vec<&[u8]> = first.iter().map(|e| e.payload.as_ref()).collect();
        assert_eq!(payloads, vec![b"1".as_ref(), b"2".as_ref()]);
        s.ack("a", first[1].id).await.unwrap();
        let rest = s.pending("a", 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payload.as_ref(), b"3");
        assert_eq!(
            s.pending_count("b").await.unwrap(),
            1,
            "other endpoints untouched"
        );
        s.enqueue(&[]).await.unwrap();
    }

    #[tokio::test]
    async fn one_lease_holder_per_endpoint_until_it_runs_out() {
        let s = SqliteStore::open_temporary().unwrap();
        let long = Duration::from_secs(60);
        assert!(s.lease("a", "r1", long).await.unwrap());
        assert!(!s.lease("a", "r2", long).await.unwrap(), "held by r1");
        assert!(s.lease("b", "r2", long).await.unwrap(), "per endpoint");
        assert!(s.lease("a", "r1", long).await.unwrap(), "renewal");
        s.release("a", "r2").await.unwrap();
        assert!(
            !s.lease("a", "r2", long).await.unwrap(),
            "only the holder releases"
        );
        s.release("a", "r1").await.unwrap();
        assert!(
            s.lease("a", "r2", Duration::ZERO).await.unwrap(),
            "released"
        );
        // r2's lease ran out at once (ttl 0): anyone may take it, like a crashed holder's.
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.lease("a", "r1", long).await.unwrap(), "expired");
    }

    #[tokio::test]
    async fn counts_and_stale_uploads() {
        let s = SqliteStore::open_temporary().unwrap();
        assert_eq!(s.counts().await.unwrap(), Counts::default());
        let repo = berth_oci::RepoName::parse("a/b").unwrap();
        let digest = berth_oci::Digest::parse(
            "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        )
        .unwrap();
        s.link_blob(&repo, &digest, 3).await.unwrap();
        for (byte, at) in [(1u8, 100), (2u8, 10_000)] {
            let id = UploadId::from_random([byte; 16]);
            let session = UploadSession {
                id,
                repo: repo.clone(),
                started_at: at,
                hash_state: Vec::new(),
            };
            s.create_upload(&session).await.unwrap();
        }
        let c = s.counts().await.unwrap();
        assert_eq!(
            (c.repositories, c.blobs, c.uploads, c.manifests),
            (1, 1, 2, 0)
        );
        let stale = s.stale_uploads(5_000, 10).await.unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0], UploadId::from_random([1; 16]));
    }
}
