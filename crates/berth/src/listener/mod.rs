//! Berth's listeners: accept loop, optional TLS, HTTP/1.1 and HTTP/2, graceful shutdown.
//!
//! Design decision: a small accept loop over hyper-util instead of `axum::serve`, because
//! `axum::serve` can neither terminate TLS nor bound the drain: Berth needs both, and it must be
//! able to say which requests a shutdown cut off. The same code serves the registry port and any
//! second listener (the debug/metrics port); all listeners of a process share one [`Shutdown`]:
//!
//! ```ignore
//! let shutdown = Shutdown::on_signals();
//! let opts = ListenOptions { name: "http", addr, tls, drain_timeout, body, conns };
//! let bound = listener::bind(opts).await?;
//! tracing::info!(addr = %bound.local_addr()?, "ready");
//! bound.serve(router, shutdown.clone()).await; // returns once drained
//! ```
//!
//! Shutdown, on the first SIGTERM/SIGINT: the listening socket is closed at once (new
//! connections are refused), idle keep-alive connections are closed, HTTP/1 connections finish the
//! request they are serving and close, HTTP/2 connections get a GOAWAY and finish their open
//! streams. Whatever still runs after [`ListenOptions::drain_timeout`] (or when a second signal
//! arrives) is cut off and logged (method, path, peer, how long it ran), and [`Bound::serve`]
//! returns normally: a drain that hit its deadline is still a clean, expected stop, and the
//! process exits 0. A cut-off upload loses nothing that was committed: its session stays
//! resumable and no blob is ever half-written.
//!
//! Slow and greedy clients: a connection past [`ListenOptions::conns`] is closed right after
//! accept ([`caps`]); a request body slower than [`ListenOptions::body`] fails, is answered 408
//! and closes its connection ([`body`]); request heads are bounded by hyper's header timeout
//! (30 s) and TLS handshakes by 10 s ([`conn`]).

pub mod body;
pub mod caps;
mod conn;
mod inflight;
mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::tls::{self, TlsError, TlsOptions};

pub use body::BodyLimits;
pub use caps::{auto_max_connections, raise_nofile_limit, ConnLimits};
pub use shutdown::Shutdown;

use caps::Admission;
use conn::Shared;
use inflight::InFlight;

/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How one listener is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Name in logs: `http` for the registry, `debug` for the debug server.
    pub name: &'static str,
    /// `host:port` to bind (`0.0.0.0:5000`).
    pub addr: String,
    /// HTTPS when present.
    pub tls: Option<TlsOptions>,
    /// How long in-flight requests may run after shutdown is requested.
    pub drain_timeout: Duration,
    /// The minimum rate of request bodies.
    pub body: BodyLimits,
    /// Caps on open connections.
    pub conns: ConnLimits,
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("{name} listener: cannot listen on {addr}: {source}")]
    Bind {
        /// Listener name.
        name: &'static str,
        /// The address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound listener, ready to [`Bound::serve`].
pub struct Bound {
    opts: ListenOptions,
    tcp: TcpListener,
    tls: Option<tls::Tls>,
}

/// Loads TLS (if configured) and binds: every startup error surfaces here, before serving.
pub async fn bind(opts: ListenOptions) -> Result<Bound, ListenError> {
    let tls = opts.tls.as_ref().map(tls::load).transpose()?;
    let tcp = TcpListener::bind(&opts.addr)
        .await
        .map_err(|source| ListenError::Bind {
            name: opts.name,
            addr: opts.addr.clone(),
            source,
        })?;
    Ok(Bound { opts, tcp, tls })
}

impl Bound {
    /// The bound address (the real port when `addr` asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether this listener speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `router` until `shutdown` is requested, then drains (see the module docs); a
    /// second signal ([`Shutdown::forced`]) ends the drain at once.
    pub async fn serve(self, router: Router, shutdown: Shutdown) {
        let Bound { opts, tcp, tls } = self;
        let (acceptor, reloader) = match tls {
            Some(t) => (
                Some(TlsAcceptor::from(t.config)),
                Some(tokio::spawn(t.reloader.run())),
            ),
            None => (None, None),
        };
        let shared = Shared {
            name: opts.name,
            router,
            tls: acceptor,
            inflight: InFlight::default(),
            body: opts.body,
        };
        let admission = Admission::new(opts.name, opts.conns.clone());
        let graceful = GracefulShutdown::new();
        let mut conns = JoinSet::new();
        let accept = Accept {
            tcp: &tcp,
            shared: &shared,
            admission: &admission,
            graceful: &graceful,
        };
        accept.until(&mut conns, shutdown.clone().requested()).await;
        drop(tcp);
        drain(&opts, &shared.inflight, graceful, conns, shutdown.forced()).await;
        if let Some(task) = reloader {
            task.abort();
        }
    }
}

/// What the accept loop works with.
struct Accept<'a> {
    tcp: &'a TcpListener,
    shared: &'a Shared,
    admission: &'a Admission,
    graceful: &'a GracefulShutdown,
}

impl Accept<'_> {
    async fn until(&self, conns: &mut JoinSet<()>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start(conns, stream, peer),
                    Err(e) => {
                        tracing::warn!(listener = self.shared.name, error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    /// Serves the connection if the caps admit it; otherwise closes it at once (dropping it).
    fn start(&self, conns: &mut JoinSet<()>, stream: TcpStream, peer: SocketAddr) {
        let Ok(permit) = self.admission.admit(peer.ip()) else {
            return;
        };
        let serve = conn::serve(stream, peer, self.shared.clone(), self.graceful.watcher());
        conns.spawn(async move {
            serve.await;
            drop(permit);
        });
    }
}

/// Lets open connections finish within the drain timeout, then cuts the rest.
async fn drain(
    opts: &ListenOptions,
    inflight: &InFlight,
    graceful: GracefulShutdown,
    mut conns: JoinSet<()>,
    forced: impl Future<Output = ()>,
) {
    let name = opts.name;
    tracing::info!(
        listener = name,
        connections = graceful.count(),
        requests = inflight.len(),
        drain_timeout_s = opts.drain_timeout.as_secs_f64(),
        "stopped accepting; draining"
    );
    let why = tokio::select! {
        () = graceful.shutdown() => {
            tracing::info!(listener = name, "drained: every in-flight request finished");
            conns.shutdown().await;
            return;
        }
        () = tokio::time::sleep(opts.drain_timeout) => "drain timeout reached",
        () = forced => "second signal",
    };
    while conns.try_join_next().is_some() {}
    let cut = inflight.log_cut_off(name);
    tracing::warn!(
        listener = name,
        requests = cut,
        connections = conns.len(),
        "{why}; closing the remaining connections"
    );
    conns.shutdown().await;
}
