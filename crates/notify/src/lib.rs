//! Webhook notifications in registry:2's format, delivered from a durable outbox.
//!
//! Design decisions:
//! * **Same envelope as registry:2** (`application/vnd.docker.distribution.events.v1+json`,
//!   `{"events":[…]}` with `id`, `timestamp`, `action`, `target`, `request`, `actor`, `source`), so
//!   receivers written for Distribution work unchanged.
//! * **Events come from the registry, not from HTTP.** [`WebhookSink`] subscribes to
//!   `berth-registry`'s domain events and turns each into registry:2's events, so a change made
//!   by garbage collection or an import notifies exactly like a push (its actor says who).
//! * **Never block a request.** The sink hands an [`Event`] to [`Notifier::publish`], which
//!   only `try_send`s into a bounded channel. One writer task batches events into the metadata
//!   store's [`Outbox`](berth_meta::ops::Outbox) (one transaction per batch), after applying each
//!   endpoint's filters. A full channel drops the event with a warning and a metric rather than
//!   slow the registry down.
//! * **Persistent, ordered delivery.** One task per endpoint reads its pending events in order,
//!   POSTs them in batches, and removes them only after a 2xx answer. While an endpoint is down it
//!   retries with registry:2's threshold/backoff semantics (doubling up to five minutes); events
//!   wait in the database across restarts. Shutdown flushes the channel into the outbox.
//! * **reqwest with rustls** for delivery: receivers are often HTTPS with private CAs (the system
//!   trust store is used); hand-rolling an HTTP client is not where Berth adds value.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod deliver;
mod event;
mod queue;
mod sink;

pub use deliver::EndpointConfig;
pub use event::{Action, Actor, Event, RequestInfo, Target, MEDIA_TYPE};
pub use queue::{Notifier, NotifierHandle};
pub use sink::{Urls, WebhookSink};
