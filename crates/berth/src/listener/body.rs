//! A minimum rate for request bodies (`http.limits.bodyminrate`, `http.limits.bodytimeout`).
//!
//! hyper bounds how long a request head may take, but not a body: a client that sends a byte now
//! and then keeps its request (and a socket, a task, an upload lock) forever. [`MinRate`] wraps
//! every request body that is not already finished and fails it with [`BodyTooSlow`] when, over
//! a period P of time spent *waiting for the client*, fewer than R×P bytes arrived, or nothing
//! arrived for P at all.
//!
//! Only waiting counts: the clock runs from the moment the body answered `Pending` to the handler
//! until the handler polls it again (woken by data or by the timer). While the handler is busy
//! elsewhere (writing a chunk to storage, waiting for the database) it does not poll the body,
//! hyper stops reading the socket, and none of that time is held against the client. The
//! handlers stream sequentially (read a chunk, write it, read the next), so "polled again" is
//! "data arrived" up to scheduling delay.
//!
//! Cost: requests without a body (GET, HEAD: the hot path) are not wrapped at all. A wrapped body
//! allocates its [`BodyTrip`] and, only on its first `Pending`, one tokio `Sleep`, re-armed in
//! place afterwards. A body that failed marks its trip; the HTTP layer then answers 408 with an
//! OCI error naming the setting ([`too_slow_response`]) and closes the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_oci::ErrorCode;
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The minimum body rate of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// R: bytes per second a body must average while the server waits for it; 0 checks only
    /// that something arrives within each period.
    pub min_rate: u64,
    /// P: the period; zero turns the check off (bodies are not wrapped).
    pub period: Duration,
}

impl BodyLimits {
    /// No limit at all.
    #[cfg(test)]
    pub const OFF: BodyLimits = BodyLimits {
        min_rate: 0,
        period: Duration::ZERO,
    };

    /// R×P: the bytes one period of waiting must bring.
    fn required(&self) -> u64 {
        let bytes = u128::from(self.min_rate) * self.period.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// Why a request body was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyTooSlow {
    /// Nothing arrived for a whole period of waiting.
    #[error(
        "no request body data arrived for {}s (http.limits.bodytimeout)",
        secs(*period)
    )]
    Idle {
        /// P.
        period: Duration,
    },
    /// Something arrived, but less than R×P over a period of waiting.
    #[error(
        "request body arrived slower than http.limits.bodyminrate ({rate} bytes/s over {}s of \
         waiting, http.limits.bodytimeout)",
        secs(*period)
    )]
    Rate {
        /// R.
        rate: u64,
        /// P.
        period: Duration,
    },
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.3}")
    }
}

/// Shared between a request's [`MinRate`] body and the HTTP layer: set once the body is too slow.
#[derive(Clone, Debug, Default)]
pub struct BodyTrip(Arc<OnceLock<BodyTooSlow>>);

impl BodyTrip {
    /// Why the body was cut off, once it was.
    pub fn tripped(&self) -> Option<BodyTooSlow> {
        self.0.get().copied()
    }

    fn trip(&self, why: BodyTooSlow) {
        let _ = self.0.set(why);
    }
}

/// Wraps the body of `req` unless it is already at its end (or the limit is off); the returned
/// trip (also stored in the request's extensions) tells whether it was cut off.
pub fn watch<B>(req: Request<B>, limits: BodyLimits) -> (Request<Body>, Option<BodyTrip>)
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    if limits.period.is_zero() || req.body().is_end_stream() {
        return (req.map(Body::new), None);
    }
    let trip = BodyTrip::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(trip.clone());
    let body = Body::new(MinRate::new(body, limits, trip.clone()));
    (Request::from_parts(parts, body), Some(trip))
}

/// The answer to a request whose body was too slow: 408 with an OCI error naming the setting,
/// and `Connection: close` on HTTP/1 (HTTP/2 forbids the header; the listener closes the
/// connection either way).
pub fn too_slow_response(why: BodyTooSlow, version: Version) -> Response {
    let mut resp = ApiError::msg(ErrorCode::RequestTimeout, why.to_string()).into_response();
    if version <= Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Replaces `resp` with the 408 answer when `trip` fired (a handler answers a failed body read
/// with its own code, e.g. 400 `BLOB_UPLOAD_INVALID`); otherwise returns it unchanged.
pub fn answer_too_slow(resp: Response, trip: Option<&BodyTrip>, version: Version) -> Response {
    match trip.and_then(BodyTrip::tripped) {
        Some(why) if resp.status() != StatusCode::REQUEST_TIMEOUT => {
            too_slow_response(why, version)
        }
        _ => resp,
    }
}

/// A request body that fails with [`BodyTooSlow`] when the client sends too slowly.
pub struct MinRate<B> {
    inner: B,
    limits: BodyLimits,
    required: u64,
    trip: BodyTrip,
    clock: Clock,
}

/// Waiting time and bytes of the current period.
#[derive(Default)]
struct Clock {
    /// Waiting time in the current rate window.
    waited: Duration,
    /// Bytes received in the current rate window.
    bytes: u64,
    /// Waiting time since the last data frame.
    idle: Duration,
    /// When the body last answered `Pending` (the server has been waiting since).
    pending_since: Option<Instant>,
    /// Wakes the handler when the next check is due; created on the first `Pending`.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> MinRate<B> {
    /// Wraps `inner`; `trip` records a failure.
    pub fn new(inner: B, limits: BodyLimits, trip: BodyTrip) -> MinRate<B> {
        MinRate {
            inner,
            required: limits.required(),
            limits,
            trip,
            clock: Clock::default(),
        }
    }

    /// Ends a period that is complete: too few bytes (or none for a whole period) fails it.
    fn check(&mut self) -> Result<(), BodyTooSlow> {
        let (period, c) = (self.limits.period, &mut self.clock);
        if c.idle >= period {
            return Err(BodyTooSlow::Idle { period });
        }
        if c.waited >= period {
            if c.bytes < self.required {
                return Err(BodyTooSlow::Rate {
                    rate: self.limits.min_rate,
                    period,
                });
            }
            c.waited = Duration::ZERO;
            c.bytes = 0;
        }
        Ok(())
    }

    fn fail(&self, why: BodyTooSlow) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.trip.trip(why);
        Poll::Ready(Some(Err(Box::new(why))))
    }
}

impl Clock {
    /// The handler polls again: the wait since the last `Pending` is over.
    fn resume(&mut self) {
        if let Some(since) = self.pending_since.take() {
            let waited = since.elapsed();
            self.waited += waited;
            self.idle += waited;
        }
    }

    fn received(&mut self, n: usize) {
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        self.idle = Duration::ZERO;
    }

    /// The body answers `Pending`: start waiting and arm the timer for the next check.
    fn wait(&mut self, period: Duration, cx: &mut Context<'_>) {
        let now = Instant::now();
        self.pending_since = Some(now);
        let deadline = now + period.saturating_sub(self.waited.max(self.idle));
        let sleep = match &mut self.sleep {
            Some(s) => {
                s.as_mut().reset(deadline);
                s
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

impl<B> http_body::Body for MinRate<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(why) = this.trip.tripped() {
            return this.fail(why);
        }
        this.clock.resume();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.clock.received(data.len());
                }
                match this.check() {
                    Ok(()) => Poll::Ready(Some(Ok(frame))),
                    Err(why) => this.fail(why),
                }
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.check() {
                Ok(()) => {
                    this.clock.wait(this.limits.period, cx);
                    Poll::Pending
                }
                Err(why) => this.fail(why),
            },
        }
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
    use http_body_util::BodyExt as _;
    use tokio::sync::mpsc;

    /// A body fed through a channel; ends when the sender is dropped.
    struct Chan(mpsc::Receiver<Bytes>);

    impl http_body::Body for Chan {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    const LIMITS: BodyLimits = BodyLimits {
        min_rate: 100,
        period: Duration::from_secs(10),
    };

    fn body() -> (mpsc::Sender<Bytes>, MinRate<Chan>, BodyTrip) {
        let (tx, rx) = mpsc::channel(4);
        let trip = BodyTrip::default();
        (tx, MinRate::new(Chan(rx), LIMITS, trip.clone()), trip)
    }

    /// Reads the whole body; the error, if any, as [`BodyTooSlow`].
    async fn drain(b: MinRate<Chan>) -> Result<u64, BodyTooSlow> {
        let mut b = std::pin::pin!(b);
        let mut n = 0;
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Err(*e.downcast::<BodyTooSlow>().expect("typed error")),
            }
        }
        Ok(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_body_passes() {
        let (tx, b, trip) = body();
        tokio::spawn(async move {
            for _ in 0..100 {
                tx.send(Bytes::from(vec![0; 1000])).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        assert_eq!(drain(b).await, Ok(100_000));
        assert_eq!(trip.tripped(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_after_one_period() {
        let (tx, b, trip) = body();
        let started = Instant::now();
        tokio::spawn(async move {
            while tx.send(Bytes::from_static(b"x")).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let why = BodyTooSlow::Rate {
            rate: 100,
            period: LIMITS.period,
        };
        assert_eq!(drain(b).await, Err(why));
        assert_eq!(trip.tripped(), Some(why));
        let took = started.elapsed();
        assert!(took >= LIMITS.period && took <= LIMITS.period + Duration::from_secs(2));
        assert!(why
            .to_string()
            .contains("http.limits.bodyminrate (100 bytes/s over 10s"));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_fails_even_after_a_burst() {
        let (tx, b, _trip) = body();
        let started = Instant::now();
        tx.send(Bytes::from(vec![0; 5000])).await.unwrap();
        let why = BodyTooSlow::Idle {
            period: LIMITS.period,
        };
        assert_eq!(drain(b).await, Err(why));
        let took = started.elapsed();
        assert!(took >= LIMITS.period && took < LIMITS.period + Duration::from_millis(10));
        assert!(why
            .to_string()
            .contains("for 10s (http.limits.bodytimeout)"));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_handler_spends_elsewhere_does_not_count() {
        let (tx, b, trip) = body();
        // The client sends as fast as the server reads; the server spends a minute per chunk
        // elsewhere (storage backpressure): the body never waits, so it never fails.
        tokio::spawn(async move {
            for _ in 0..5 {
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
        });
        let mut b = std::pin::pin!(b);
        let mut n = 0;
        while let Some(f) = b.frame().await {
            n += f.expect("not too slow").into_data().map_or(0, |d| d.len());
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        assert_eq!(n, 5);
        assert_eq!(trip.tripped(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_its_end_is_not_wrapped() {
        let req = Request::get("/v2/").body(Body::empty()).unwrap();
        let (req, trip) = watch(req, LIMITS);
        assert!(trip.is_none() && req.extensions().get::<BodyTrip>().is_none());
        let req = Request::post("/auth/token")
            .body(Body::from("a=b"))
            .unwrap();
        assert!(watch(req, BodyLimits::OFF).1.is_none());
        let (tx, rx) = mpsc::channel(1);
        let req = Request::post("/auth/token").body(Chan(rx)).unwrap();
        let (req, trip) = watch(req, LIMITS);
        assert!(trip.is_some() && req.extensions().get::<BodyTrip>().is_some());
        drop(tx);
    }

    #[tokio::test]
    async fn the_answer_is_408_oci_json_and_closes_http1() {
        let why = BodyTooSlow::Rate {
            rate: 1024,
            period: Duration::from_secs(30),
        };
        let trip = BodyTrip::default();
        let ok = answer_too_slow(
            StatusCode::ACCEPTED.into_response(),
            Some(&trip),
            Version::HTTP_11,
        );
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
        trip.trip(why);
        let resp = answer_too_slow(
            StatusCode::BAD_REQUEST.into_response(),
            Some(&trip),
            Version::HTTP_11,
        );
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["errors"][0]["code"], "REQUEST_TIMEOUT");
        let message = json["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("http.limits.bodyminrate"), "{message}");
        let h2 = too_slow_response(why, Version::HTTP_2);
        assert!(h2.headers().get(header::CONNECTION).is_none());
    }
}
