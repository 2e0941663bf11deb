//! One accepted connection: optional TLS handshake, then HTTP/1.1 or HTTP/2 until the peer
//! leaves or shutdown asks the connection to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::body::{self, BodyLimits, BodyTrip};
use super::inflight::{InFlight, Tracked};

/// A handshake that has not finished by then is dropped (slow or stalled clients must not pin
/// sockets and memory).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a request body was too slow, how long the connection may still take to send its 408
/// (and, on HTTP/2, to finish other streams) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection of a listener shares.
#[derive(Clone)]
pub struct Shared {
    /// Listener name for logs (`http`, `debug`).
    pub name: &'static str,
    /// The application.
    pub router: Router,
    /// Present for HTTPS.
    pub tls: Option<TlsAcceptor>,
    /// Requests in flight, for the shutdown report.
    pub inflight: InFlight,
    /// The minimum rate of request bodies.
    pub body: BodyLimits,
}

/// Serves `stream` until it closes; `watcher` lets a shutdown drain it.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Shared, watcher: Watcher) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let Some(acceptor) = shared.tls.clone() else {
        return http(stream, peer, shared, watcher).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => http(tls, peer, shared, watcher).await,
        Ok(Err(e)) => {
            tracing::info!(listener = shared.name, %peer, error = %e, "TLS handshake failed")
        }
        Err(_) => tracing::info!(listener = shared.name, %peer, "TLS handshake timed out"),
    }
}

async fn http<I>(io: I, peer: SocketAddr, shared: Shared, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Shared {
        router,
        inflight,
        body: limits,
        ..
    } = shared;
    let too_slow = Arc::new(Notify::new());
    let close = Arc::clone(&too_slow);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let guard = inflight.start(&req, peer);
        let version = req.version();
        let (req, trip) = body::watch(req, limits);
        let router = router.clone();
        let close = trip.as_ref().map(|_| Arc::clone(&close));
        async move {
            let mut resp = match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if let (Some(why), Some(close)) = (trip.as_ref().and_then(BodyTrip::tripped), close) {
                tracing::debug!(%peer, error = %why, "request body too slow; closing the connection");
                resp = body::answer_too_slow(resp, trip.as_ref(), version);
                close.notify_one();
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, guard)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer turns on hyper's limit on how long a request head may take to arrive.
    builder.http1().timer(TokioTimer::new());
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
    if let Err(e) = until_closed(conn, &too_slow).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs `conn` to its end, or, once a request body was too slow, for at most [`CLOSE_GRACE`]
/// more: HTTP/1 ends by itself after the 408 (`Connection: close`); whatever is left then (an
/// HTTP/2 connection, a peer that does not read) is dropped.
async fn until_closed<E>(
    conn: impl Future<Output = Result<(), E>>,
    too_slow: &Notify,
) -> Result<(), E> {
    tokio::pin!(conn);
    tokio::select! {
        r = &mut conn => r,
        () = too_slow.notified() => {
            tokio::time::timeout(CLOSE_GRACE, &mut conn).await.unwrap_or(Ok(()))
        }
    }
}
