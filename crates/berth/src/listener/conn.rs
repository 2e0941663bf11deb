//! One accepted connection: optional TLS handshake, then HTTP/1.1 or HTTP/2 until the peer
//! leaves or shutdown asks the connection to finish.

use std::convert::Infallible;
use std::net::SocketAddr;
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
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::inflight::{InFlight, Tracked};

/// A handshake that has not finished by then is dropped (slow or stalled clients must not pin
/// sockets and memory).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        router, inflight, ..
    } = shared;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let guard = inflight.start(&req, peer);
        let router = router.clone();
        async move {
            let resp = match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, guard)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer turns on hyper's limit on how long a request head may take to arrive.
    builder.http1().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
