//! [`Outbox`] and [`Inventory`] on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;
use rusqlite::Connection;

use super::{Context, SqliteStore};
use crate::ops::{Counts, Inventory, Outbox, OutboxEntry};
use crate::rows::{sql_int, unix_now as now, unsigned, SQLITE};
use crate::Result;

/// Unix milliseconds now: lease expiry (SQLite serves one host, so its clock is the store's).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| sql_int(d.as_millis()))
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
                    .map(unsigned)
            })
            .await
    }

    async fn lease(&self, endpoint: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (endpoint, holder) = (endpoint.to_owned(), holder.to_owned());
        let ttl_ms = sql_int(ttl.as_millis());
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
        .query_map(rusqlite::params![endpoint, sql_int(limit)], |r| {
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
                    .query_map(rusqlite::params![started_before, sql_int(limit)], |r| {
                        r.get::<_, String>(0)
                    })
                    .ctx("read stale uploads")?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .ctx("read stale upload row")?;
                ids.iter().map(|id| SQLITE.upload_id(id)).collect()
            })
            .await
    }
}

fn counts(c: &Connection) -> Result<Counts> {
    let one = |sql: &str| {
        c.prepare_cached(sql)
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .ctx("count")
            .map(unsigned)
    };
    Ok(Counts {
        repositories: one("SELECT count(*) FROM repositories")?,
        manifests: one("SELECT count(*) FROM manifests")?,
        blobs: one("SELECT count(*) FROM blobs")?,
        uploads: one("SELECT count(*) FROM uploads")?,
    })
}
