//! The delivery side: one task per endpoint, reading its outbox in order.
//!
//! Replicas sharing a metadata store each run these tasks; the endpoint's lease in the store
//! ([`Outbox::lease`]) lets one of them deliver at a time, so each event is sent once and
//! events go out in outbox order. The holder renews before every batch (the lease lasts the
//! endpoint's timeout plus [`LEASE_MARGIN`]) and releases it when the queue is empty or it
//! stops; a crashed holder's lease runs out and another replica goes on where it stopped. A
//! holder paused longer than its lease (or one that crashed between a send and its ack) can
//! cause a batch to be sent twice: delivery is at least once, exactly once otherwise.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::ops::{Outbox, OutboxEntry};
use tokio::sync::{watch, Notify};

use crate::event::{Event, MEDIA_TYPE};

/// Events sent in one request at most.
const BATCH: usize = 64;
/// Longest wait between attempts while an endpoint is down.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Pause between attempts before the failure threshold is reached.
const RETRY: Duration = Duration::from_millis(100);
/// Idle re-check (another replica may have queued events).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Re-check while another replica holds the endpoint's lease.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// A lease's life beyond the endpoint's timeout: how long a crashed holder delays delivery.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// One receiver, as configured in `notifications.endpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// Receiver URL.
    pub url: String,
    /// Headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Consecutive failures before backing off.
    pub threshold: u32,
    /// First backoff; doubles up to five minutes.
    pub backoff: Duration,
    /// Targets with these media types are not sent.
    pub ignored_media_types: Vec<String>,
    /// Actions not sent.
    pub ignored_actions: Vec<String>,
}

impl EndpointConfig {
    /// Whether this endpoint wants `e`.
    pub fn wants(&self, e: &Event) -> bool {
        let action = e.action.as_str();
        !self.ignored_actions.iter().any(|a| a == action)
            && !self
                .ignored_media_types
                .iter()
                .any(|m| !e.target.media_type.is_empty() && *m == e.target.media_type)
    }
}

/// What the loop does next.
enum Next {
    /// Go on at once.
    Now,
    /// Sleep this long (backoff, store errors).
    Sleep(Duration),
    /// Wait for new events (a wake from this process's writer) or this long.
    Idle(Duration),
}

/// Delivers until `stopped` turns true, while holding the endpoint's lease (`holder` names this
/// process); gives the lease up on the way out so another replica takes over at once.
pub(crate) async fn run(
    ep: Arc<EndpointConfig>,
    outbox: Arc<dyn Outbox>,
    holder: String,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(ep.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(endpoint = %ep.name, error = %e, "cannot build webhook client");
            return;
        }
    };
    let d = Deliverer {
        ep: &ep,
        outbox: outbox.as_ref(),
        holder: &holder,
        client,
    };
    let mut failures = 0u32;
    while !*stopped.borrow() {
        match d.step(&mut failures).await {
            Next::Now => {}
            Next::Sleep(p) => {
                tokio::select! {
                    _ = tokio::time::sleep(p) => {}
                    _ = stopped.changed() => {}
                }
            }
            Next::Idle(p) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(p) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }
    if let Err(e) = outbox.release(&ep.name, &holder).await {
        tracing::warn!(endpoint = %ep.name, error = %e, "cannot release the delivery lease");
    }
}

/// How long a lease outlives the attempt that took it: a holder renews before every batch,
/// and one batch takes at most the endpoint's timeout.
fn lease_ttl(ep: &EndpointConfig) -> Duration {
    ep.timeout.saturating_add(LEASE_MARGIN)
}

/// One endpoint's delivery loop state that does not change.
struct Deliverer<'a> {
    ep: &'a EndpointConfig,
    outbox: &'a dyn Outbox,
    holder: &'a str,
    client: reqwest::Client,
}

impl Deliverer<'_> {
    /// Takes the lease, then sends the next batch if there is one.
    async fn step(&self, failures: &mut u32) -> Next {
        let ep = self.ep;
        match self
            .outbox
            .lease(&ep.name, self.holder, lease_ttl(ep))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another replica delivers; look again in case it stops or dies.
                update_pending(ep, self.outbox).await;
                return Next::Idle(LEASE_POLL);
            }
            Err(e) => {
                tracing::warn!(endpoint = %ep.name, error = %e, "cannot take the delivery lease");
                return Next::Sleep(Duration::from_secs(1));
            }
        }
        match self.outbox.pending(&ep.name, BATCH).await {
            Ok(entries) if entries.is_empty() => {
                if let Err(e) = self.outbox.release(&ep.name, self.holder).await {
                    tracing::warn!(endpoint = %ep.name, error = %e, "cannot release the delivery lease");
                }
                update_pending(ep, self.outbox).await;
                Next::Idle(IDLE_POLL)
            }
            // The lease is not stretched over a backoff: a replica restarted after a crash (a
            // new holder) must not wait minutes for its dead predecessor's lease.
            Ok(entries) => match attempt(ep, &self.client, self.outbox, &entries, failures).await {
                None => Next::Now,
                Some(wait) => Next::Sleep(wait),
            },
            Err(e) => {
                tracing::warn!(endpoint = %ep.name, error = %e, "cannot read notification outbox");
                Next::Sleep(Duration::from_secs(1))
            }
        }
    }
}

/// Sends one batch; returns how long to wait before the next attempt (None: go on at once).
async fn attempt(
    ep: &EndpointConfig,
    client: &reqwest::Client,
    outbox: &dyn Outbox,
    entries: &[OutboxEntry],
    failures: &mut u32,
) -> Option<Duration> {
    let result = send(ep, client, entries).await;
    let last = entries.last()?;
    match result {
        Ok(()) => {
            *failures = 0;
            metrics::counter!("berth_notifications_sent_total", "endpoint" => ep.name.clone())
                .increment(entries.len() as u64);
            if let Err(e) = outbox.ack(&ep.name, last.id).await {
                tracing::warn!(endpoint = %ep.name, error = %e, "cannot remove delivered events");
                return Some(Duration::from_secs(1));
            }
            update_pending(ep, outbox).await;
            None
        }
        Err(why) => {
            *failures += 1;
            metrics::counter!("berth_notifications_failed_total", "endpoint" => ep.name.clone())
                .increment(1);
            let wait = backoff(ep, *failures);
            tracing::warn!(endpoint = %ep.name, failures = *failures, retry_in = ?wait, "webhook delivery failed: {why}");
            update_pending(ep, outbox).await;
            Some(wait)
        }
    }
}

fn backoff(ep: &EndpointConfig, failures: u32) -> Duration {
    if failures < ep.threshold {
        return RETRY;
    }
    let doublings = (failures - ep.threshold).min(16);
    ep.backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

async fn send(
    ep: &EndpointConfig,
    client: &reqwest::Client,
    entries: &[OutboxEntry],
) -> Result<(), String> {
    let mut body =
        Vec::with_capacity(entries.iter().map(|e| e.payload.len() + 1).sum::<usize>() + 12);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.payload);
    }
    body.extend_from_slice(b"]}");
    let mut req = client
        .post(&ep.url)
        .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE);
    for (k, v) in &ep.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.body(body).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {status}"))
    }
}

async fn update_pending(ep: &EndpointConfig, outbox: &dyn Outbox) {
    if let Ok(n) = outbox.pending_count(&ep.name).await {
        metrics::gauge!("berth_notifications_pending", "endpoint" => ep.name.clone()).set(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> EndpointConfig {
        EndpointConfig {
            name: "e".into(),
            url: "http://127.0.0.1:1/".into(),
            headers: vec![],
            timeout: Duration::from_secs(1),
            threshold: 3,
            backoff: Duration::from_secs(1),
            ignored_media_types: vec!["application/octet-stream".into()],
            ignored_actions: vec!["pull".into()],
        }
    }

    #[test]
    fn backoff_doubles_after_threshold_and_caps() {
        let e = ep();
        assert_eq!(backoff(&e, 1), RETRY);
        assert_eq!(backoff(&e, 3), Duration::from_secs(1));
        assert_eq!(backoff(&e, 5), Duration::from_secs(4));
        assert_eq!(backoff(&e, 40), MAX_BACKOFF);
    }

    #[test]
    fn filters() {
        use crate::event::{Action, Actor, RequestInfo, Target};
        let e = ep();
        let mk = |a, mt: &str| {
            Event::new(
                a,
                Target {
                    media_type: mt.into(),
                    ..Target::default()
                },
                RequestInfo::default(),
                Actor::default(),
            )
        };
        assert!(e.wants(&mk(
            Action::Push,
            "application/vnd.oci.image.manifest.v1+json"
        )));
        assert!(!e.wants(&mk(Action::Pull, "")));
        assert!(!e.wants(&mk(Action::Push, "application/octet-stream")));
        assert!(e.wants(&mk(Action::Delete, "")));
    }
}
