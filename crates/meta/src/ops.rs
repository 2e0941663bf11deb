//! Role traits beside [`crate::MetaStore`] for the operations side of the registry: the webhook
//! outbox and the inventory that metrics and maintenance read. Kept apart from the domain trait
//! so the pull/push path depends only on what it uses.

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;

use crate::Result;

/// One queued event for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Delivery order (assigned by the store).
    pub id: i64,
    /// Endpoint name.
    pub endpoint: String,
    /// The serialized event (one JSON object).
    pub payload: Bytes,
}

/// A durable per-endpoint FIFO of events awaiting delivery.
///
/// Several processes may share one store (replicas on one PostgreSQL). Each endpoint then has
/// one deliverer at a time: the holder of its lease ([`Outbox::lease`]). The holder reads, sends
/// and acks in `id` order, so every event is sent once and in order; a holder that crashes stops
/// renewing and its lease runs out, after which another process takes over.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Appends events, each `(endpoint, payload)`, in one transaction.
    async fn enqueue(&self, events: &[(String, Bytes)]) -> Result<()>;
    /// The oldest `limit` pending events of `endpoint`, in order.
    async fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// Removes delivered events of `endpoint` up to and including `through_id`.
    async fn ack(&self, endpoint: &str, through_id: i64) -> Result<()>;
    /// Number of pending events of `endpoint`.
    async fn pending_count(&self, endpoint: &str) -> Result<u64>;
    /// Takes or renews the delivery lease of `endpoint` for `holder`, valid for `ttl` from now
    /// (the store's clock). `false` while another holder's lease has not run out.
    async fn lease(&self, endpoint: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives up the lease of `endpoint` if `holder` has it.
    async fn release(&self, endpoint: &str, holder: &str) -> Result<()>;
}

/// Object counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Known repositories.
    pub repositories: u64,
    /// Manifests across repositories.
    pub manifests: u64,
    /// Distinct blobs.
    pub blobs: u64,
    /// Upload sessions in progress.
    pub uploads: u64,
}

/// What metrics and maintenance ask of the whole store.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// Object counts.
    async fn counts(&self) -> Result<Counts>;
    /// Up to `limit` upload sessions started before `started_before` (Unix seconds), oldest first.
    async fn stale_uploads(&self, started_before: i64, limit: usize) -> Result<Vec<UploadId>>;
}
