//! [`Outbox`] and [`Inventory`] on PostgreSQL.
//!
//! The outbox is a FIFO per endpoint ordered by `id`, and a deliverer acknowledges "everything up
//! to id N". With several replicas enqueueing, identity values could commit out of order (id 6
//! visible, id 5 still in flight): an ack through 6 would then delete 5 undelivered. So an
//! enqueue takes `LOCK TABLE outbox IN EXCLUSIVE MODE` for its short transaction: enqueues run
//! one after another (they are batched off the request path), readers are not blocked, and the
//! ids visible to a reader are always a prefix of those that will ever be committed.
//!
//! Which replica delivers an endpoint is decided by a row in `outbox_leases`: one upsert takes a
//! free or expired lease or renews the caller's own, atomically (the row lock of `ON CONFLICT DO
//! UPDATE`), with expiry on the database's clock so skewed replica clocks do not matter.

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;
use deadpool_postgres::GenericClient;

use super::pool::Fail;
use super::PostgresStore;
use crate::ops::{Counts, Inventory, Outbox, OutboxEntry};
use crate::rows::{sql_int as sql_limit, unix_now as now, unsigned as count, POSTGRES};
use crate::Result;

#[async_trait]
impl Outbox for PostgresStore {
    async fn enqueue(&self, events: &[(String, Bytes)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let endpoints: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        let payloads: Vec<&[u8]> = events.iter().map(|(_, p)| p.as_ref()).collect();
        self.run("enqueue events", || async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            tx.batch_execute("LOCK TABLE outbox IN EXCLUSIVE MODE").await?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO outbox (endpoint, payload, created_at) \
                     SELECT e, p, $3 FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS t(e, p, n) \
                     ORDER BY n",
                )
                .await?;
            tx.execute(&st, &[&endpoints, &payloads, &now()]).await?;
            Ok(tx.commit().await?)
        })
        .await
    }

    async fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.run("read pending events", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached(
                    "SELECT id, payload FROM outbox WHERE endpoint = $1 ORDER BY id LIMIT $2",
                )
                .await?;
            let rows = conn.query(&st, &[&endpoint, &sql_limit(limit)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxEntry {
                        id: r.try_get(0)?,
                        endpoint: endpoint.to_owned(),
                        payload: Bytes::copy_from_slice(r.try_get::<_, &[u8]>(1)?),
                    })
                })
                .collect::<std::result::Result<Vec<_>, Fail>>()
        })
        .await
    }

    async fn ack(&self, endpoint: &str, through_id: i64) -> Result<()> {
        self.run("ack events", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached("DELETE FROM outbox WHERE endpoint = $1 AND id <= $2")
                .await?;
            conn.execute(&st, &[&endpoint, &through_id]).await?;
            Ok(())
        })
        .await
    }

    async fn pending_count(&self, endpoint: &str) -> Result<u64> {
        self.run("count pending events", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached("SELECT count(*) FROM outbox WHERE endpoint = $1")
                .await?;
            Ok(count(conn.query_one(&st, &[&endpoint]).await?.try_get(0)?))
        })
        .await
    }

    async fn lease(&self, endpoint: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        self.run("take delivery lease", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached(
                    "INSERT INTO outbox_leases (endpoint, holder, expires_at) \
                     VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 millisecond') \
                     ON CONFLICT (endpoint) DO UPDATE \
                     SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                     WHERE outbox_leases.holder = EXCLUDED.holder \
                        OR outbox_leases.expires_at < clock_timestamp()",
                )
                .await?;
            Ok(conn.execute(&st, &[&endpoint, &holder, &ttl_ms]).await? == 1)
        })
        .await
    }

    async fn release(&self, endpoint: &str, holder: &str) -> Result<()> {
        self.run("release delivery lease", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached("DELETE FROM outbox_leases WHERE endpoint = $1 AND holder = $2")
                .await?;
            conn.execute(&st, &[&endpoint, &holder]).await?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Inventory for PostgresStore {
    async fn counts(&self) -> Result<Counts> {
        self.run("count objects", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached(
                    "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM manifests), \
                     (SELECT count(*) FROM blobs), (SELECT count(*) FROM uploads)",
                )
                .await?;
            let row = conn.query_one(&st, &[]).await?;
            Ok(Counts {
                repositories: count(row.try_get(0)?),
                manifests: count(row.try_get(1)?),
                blobs: count(row.try_get(2)?),
                uploads: count(row.try_get(3)?),
            })
        })
        .await
    }

    async fn stale_uploads(&self, started_before: i64, limit: usize) -> Result<Vec<UploadId>> {
        self.run("list stale uploads", || async {
            let conn = self.conn().await?;
            let st = conn
                .prepare_cached(
                    "SELECT id FROM uploads WHERE started_at < $1 ORDER BY started_at LIMIT $2",
                )
                .await?;
            let rows = conn
                .query(&st, &[&started_before, &sql_limit(limit)])
                .await?;
            rows.iter()
                .map(|r| Ok(POSTGRES.upload_id(r.try_get(0)?)?))
                .collect()
        })
        .await
    }
}
