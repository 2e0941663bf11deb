//! The requests being served right now, so that a shutdown can say which ones it cut off.
//!
//! A request counts from the moment its head is parsed until its response body has been sent
//! (or dropped): a blob download is in flight while its bytes stream, not only while the handler
//! runs. Each request holds a [`Guard`] (inside its response body, [`Tracked`]) that removes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use http::{Method, Request};
use http_body::{Frame, SizeHint};

struct Entry {
    method: Method,
    path: String,
    peer: SocketAddr,
    started: Instant,
}

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
}

/// The set of requests in flight on one listener.
#[derive(Clone, Default)]
pub struct InFlight {
    table: Arc<Mutex<Table>>,
}

/// Keeps one request in the set until dropped.
pub struct Guard {
    id: u64,
    table: Arc<Mutex<Table>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.table).entries.remove(&self.id);
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl InFlight {
    /// Records `req` from `peer` as in flight.
    pub fn start<B>(&self, req: &Request<B>, peer: SocketAddr) -> Guard {
        let entry = Entry {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            peer,
            started: Instant::now(),
        };
        let mut t = lock(&self.table);
        let id = t.next;
        t.next += 1;
        t.entries.insert(id, entry);
        Guard {
            id,
            table: Arc::clone(&self.table),
        }
    }

    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        lock(&self.table).entries.len()
    }

    /// Logs every request still in flight as cut off; returns how many there were.
    pub fn log_cut_off(&self, listener: &str) -> usize {
        let t = lock(&self.table);
        for e in t.entries.values() {
            tracing::warn!(
                listener,
                peer = %e.peer,
                method = %e.method,
                path = %e.path,
                running_s = format_args!("{:.1}", e.started.elapsed().as_secs_f64()),
                "request cut off by shutdown"
            );
        }
        t.entries.len()
    }
}

/// A response body that keeps its request's [`Guard`] until it is finished or dropped.
pub struct Tracked {
    inner: Body,
    _guard: Guard,
}

impl Tracked {
    /// Wraps `inner`.
    pub fn new(inner: Body, guard: Guard) -> Tracked {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_and_bodies_remove_their_request() {
        let set = InFlight::default();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let req = Request::put("/v2/a/blobs/uploads/x").body(()).unwrap();
        let g1 = set.start(&req, peer);
        let g2 = set.start(&req, peer);
        assert_eq!(set.len(), 2);
        drop(g1);
        assert_eq!(set.len(), 1);
        assert_eq!(set.log_cut_off("test"), 1);
        let body = Tracked::new(Body::from("x"), g2);
        drop(body);
        assert_eq!(set.len(), 0);
    }
}
