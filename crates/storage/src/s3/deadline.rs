//! Time limits on S3 calls. The HTTP client only has an idle timeout (a transfer may last as
//! long as it keeps moving); a small request gets a limit on its whole time, retries included
//! ([`S3Options::request_timeout`](super::S3Options::request_timeout)), so a stalled endpoint
//! (it accepts connections and never answers) fails it in seconds instead of after the idle
//! timeout. The failure is an `io::ErrorKind::TimedOut` error, which the registry answers with
//! 503 `UNAVAILABLE`.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::{Stream, StreamExt};

/// Bodies up to this size are sent or received as small requests (under the total limit);
/// larger ones are transfers (only the idle timeout).
pub(crate) const SMALL_BODY: u64 = 1 << 20;

/// Extra time a `CompleteMultipartUpload` gets per part (the service assembles the parts
/// before it answers).
const COMPLETE_PER_PART: Duration = Duration::from_millis(10);

/// The limit for a request whose body (sent or received) is `len` bytes: `limit` when it is
/// small, none (the idle timeout only) for a transfer.
pub(crate) fn for_body(limit: Duration, len: u64) -> Option<Duration> {
    (len <= SMALL_BODY).then_some(limit)
}

/// The limit for completing a multipart upload of `parts` parts.
pub(crate) fn for_complete(limit: Duration, parts: usize) -> Duration {
    let parts = u32::try_from(parts).unwrap_or(u32::MAX);
    limit.saturating_add(COMPLETE_PER_PART.saturating_mul(parts))
}

/// The error of a call that did not finish within `limit`.
pub(crate) fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {limit:?} (storage.s3.requesttimeout)"),
    )
}

/// The `store` of the object_store error that [`within`] returns (to tell it from object_store's
/// own `Generic` errors).
pub(crate) const STORE: &str = "S3 time limit";

/// `timed_out` as object_store's error (its source is the `TimedOut` `io::Error`).
fn store_timed_out(limit: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(timed_out(limit)),
    }
}

/// Runs `call` (an object_store call with its retries) and fails it after `limit`, if any.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    call: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    let Some(limit) = limit else {
        return call.await;
    };
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(store_timed_out(limit)))
}

/// The next item of a paginated object_store stream (listing, bulk delete), each item (one
/// page request at most) within `limit`.
pub(crate) async fn next_within<S, T>(limit: Duration, s: &mut S) -> Option<object_store::Result<T>>
where
    S: Stream<Item = object_store::Result<T>> + Unpin,
{
    tokio::time::timeout(limit, s.next())
        .await
        .unwrap_or_else(|_| Some(Err(store_timed_out(limit))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_get_the_limit_and_transfers_none() {
        let limit = Duration::from_secs(5);
        assert_eq!(for_body(limit, 0), Some(limit));
        assert_eq!(for_body(limit, SMALL_BODY), Some(limit));
        assert_eq!(for_body(limit, SMALL_BODY + 1), None);
        assert_eq!(for_complete(limit, 0), limit);
        assert_eq!(for_complete(limit, 1000), Duration::from_secs(15));
    }

    #[tokio::test]
    async fn a_call_past_its_limit_times_out() {
        let limit = Some(Duration::from_millis(50));
        let never = futures::future::pending::<object_store::Result<()>>();
        let e = within(limit, never).await.unwrap_err();
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.map(io::Error::kind), Some(io::ErrorKind::TimedOut));
        assert_eq!(within(limit, async { Ok(7) }).await.unwrap(), 7);
        assert_eq!(within(None, async { Ok(8) }).await.unwrap(), 8);
        let mut stalled = futures::stream::pending::<object_store::Result<()>>();
        let next = next_within(Duration::from_millis(50), &mut stalled).await;
        assert!(matches!(next, Some(Err(_))));
    }
}
