//! The publish side: a bounded channel into one writer task that batches events into the outbox.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::ops::Outbox;
use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::deliver::{self, EndpointConfig};
use crate::event::{Event, Source};

/// Events waiting for the writer; beyond this, events are dropped rather than block requests.
const CHANNEL: usize = 16 * 1024;
/// Events written to the outbox in one transaction at most.
const BATCH: usize = 512;

/// Cheap to clone; [`crate::WebhookSink`] hands it the registry's events.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Event>,
}

impl Notifier {
    /// Queues an event without waiting.
    pub fn publish(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(e)) => {
                metrics::counter!("berth_notifications_dropped_total").increment(1);
                tracing::warn!(event = %e.id, "notification queue full; event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Controls the background tasks.
pub struct NotifierHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl NotifierHandle {
    /// Flushes queued events into the outbox and stops delivery. Pending events are delivered
    /// after the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "notification task failed");
            }
        }
    }
}

/// What the writer needs besides the events.
struct Writer {
    outbox: Arc<dyn Outbox>,
    endpoints: Vec<Arc<EndpointConfig>>,
    wake: Vec<Arc<Notify>>,
    source: Source,
}

impl Notifier {
    /// Starts the writer and one delivery task per endpoint; `source_addr` names this instance
    /// in events.
    pub fn start(
        endpoints: Vec<EndpointConfig>,
        outbox: Arc<dyn Outbox>,
        source_addr: String,
    ) -> (Notifier, NotifierHandle) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (stop, stopped) = watch::channel(false);
        let endpoints: Vec<Arc<EndpointConfig>> = endpoints.into_iter().map(Arc::new).collect();
        let wake: Vec<Arc<Notify>> = endpoints.iter().map(|_| Arc::new(Notify::new())).collect();
        let instance_id = uuid::Uuid::new_v4().to_string();
        let mut tasks = Vec::new();
        for (ep, w) in endpoints.iter().zip(&wake) {
            let holder = instance_id.clone();
            let run = deliver::run(
                ep.clone(),
                outbox.clone(),
                holder,
                w.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(run));
        }
        let writer = Writer {
            outbox,
            endpoints,
            wake,
            source: Source {
                addr: source_addr,
                instance_id,
            },
        };
        tasks.push(tokio::spawn(writer.run(rx, stopped)));
        (Notifier { tx }, NotifierHandle { stop, tasks })
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Event>, mut stopped: watch::Receiver<bool>) {
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => batch.push(e),
                    None => return,
                },
                _ = stopped.changed() => {
                    rx.close();
                    while let Some(e) = rx.recv().await {
                        batch.push(e);
                    }
                    self.flush(batch).await;
                    return;
                }
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            self.flush(batch).await;
        }
    }

    async fn flush(&self, mut batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        for e in &mut batch {
            e.source = self.source.clone();
        }
        let rows = self.rows(&batch);
        if rows.is_empty() {
            return;
        }
        for attempt in 1..=5u32 {
            match self.outbox.enqueue(&rows).await {
                Ok(()) => {
                    self.wake.iter().for_each(|w| w.notify_one());
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot store notification events");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        metrics::counter!("berth_notifications_dropped_total").increment(rows.len() as u64);
        tracing::error!(
            events = rows.len(),
            "notification events dropped: outbox unavailable"
        );
    }

    fn rows(&self, batch: &[Event]) -> Vec<(String, Bytes)> {
        let mut rows = Vec::new();
        for e in batch {
            let Ok(json) = serde_json::to_vec(e) else {
                continue;
            };
            let json = Bytes::from(json);
            for ep in self.endpoints.iter().filter(|ep| ep.wants(e)) {
                rows.push((ep.name.clone(), json.clone()));
            }
        }
        rows
    }
}
