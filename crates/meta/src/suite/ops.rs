//! Cases of the operations-side roles: the webhook [`Outbox`] and the [`Inventory`].

use std::time::Duration;

use super::sessions::session;
use super::*;

fn event(endpoint: &str, payload: &str) -> (String, Bytes) {
    (endpoint.to_owned(), Bytes::from(payload.to_owned()))
}

async fn payloads(o: &dyn Outbox, endpoint: &str) -> Vec<String> {
    let pending = o.pending(endpoint, usize::MAX).await.expect("pending");
    pending
        .iter()
        .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
        .collect()
}

/// Events come back per endpoint in the order they were enqueued, `limit` at a time; an ack
/// removes exactly that endpoint's events up to the id; an empty enqueue is fine.
pub async fn outbox_is_a_fifo_per_endpoint<F: Fixture>(f: F) {
    let o = f.outbox();
    let batch = [
        event("a", "1"),
        event("b", "x"),
        event("a", "2"),
        event("a", "3"),
    ];
    o.enqueue(&batch).await.expect("enqueue");
    o.enqueue(&[]).await.expect("empty enqueue");
    o.enqueue(&[event("a", "4")]).await.expect("enqueue");
    assert_eq!(o.pending_count("a").await.expect("count"), 4);
    let first = o.pending("a", 2).await.expect("pending");
    let got: Vec<&[u8]> = first.iter().map(|e| e.payload.as_ref()).collect();
    assert_eq!(got, [b"1".as_ref(), b"2".as_ref()]);
    assert!(first.iter().all(|e| e.endpoint == "a"));
    assert!(first[0].id < first[1].id, "ids follow delivery order");
    o.ack("a", first[1].id).await.expect("ack");
    assert_eq!(payloads(&*o, "a").await, ["3", "4"]);
    assert_eq!(payloads(&*o, "b").await, ["x"], "other endpoints untouched");
    o.ack("b", i64::MAX).await.expect("ack all of b");
    assert_eq!(o.pending_count("b").await.expect("count"), 0);
    assert_eq!(o.pending_count("a").await.expect("count"), 2);
    assert_eq!(o.pending_count("none").await.expect("count"), 0);
}

/// Pending events survive closing and reopening the store (stores that persist).
pub async fn outbox_survives_reopen<F: Fixture>(f: F) {
    let o = f.outbox();
    o.enqueue(&[event("hook", "kept"), event("hook", "acked")])
        .await
        .expect("enqueue");
    let first = o.pending("hook", 1).await.expect("pending");
    o.ack("hook", first[0].id).await.expect("ack");
    drop(o);
    let Some(f) = f.reopen().await else {
        return;
    };
    assert_eq!(payloads(&*f.outbox(), "hook").await, ["acked"]);
}

/// One holder per endpoint: others are refused until it releases or its lease runs out; the
/// holder renews; only the holder can release.
pub async fn one_lease_holder_per_endpoint_until_it_runs_out<F: Fixture>(f: F) {
    let o = f.outbox();
    let long = Duration::from_secs(60);
    assert!(o.lease("a", "r1", long).await.expect("lease"));
    assert!(
        !o.lease("a", "r2", long).await.expect("lease"),
        "held by r1"
    );
    assert!(
        o.lease("b", "r2", long).await.expect("lease"),
        "per endpoint"
    );
    assert!(o.lease("a", "r1", long).await.expect("lease"), "renewal");
    o.release("a", "r2").await.expect("release");
    assert!(
        !o.lease("a", "r2", long).await.expect("lease"),
        "only the holder releases"
    );
    o.release("a", "r1").await.expect("release");
    let short = Duration::from_millis(1);
    assert!(o.lease("a", "r2", short).await.expect("lease"), "released");
    // r2's lease runs out at once, like a crashed holder's: anyone may take it.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(o.lease("a", "r1", long).await.expect("lease"), "expired");
}

/// Counts follow what the store holds: repositories, manifests, distinct blobs, open sessions.
pub async fn inventory_counts_what_the_store_holds<F: Fixture>(f: F) {
    let (s, inv) = (f.store(), f.inventory());
    assert_eq!(inv.counts().await.expect("counts"), Counts::default());
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let blobs = link(&*s, &a, &["config", "layer"]).await;
    s.link_blob(&b, &blobs[0], 100).await.expect("link");
    put(&*s, &a, &image("v1", &blobs), &["v1"]).await;
    put(&*s, &a, &image("v2", &blobs), &["v2"]).await;
    s.create_upload(&session(20, "suite/b"))
        .await
        .expect("create");
    s.create_upload(&session(21, "suite/b"))
        .await
        .expect("create");
    let expected = Counts {
        repositories: 2,
        manifests: 2,
        blobs: 2,
        uploads: 2,
    };
    assert_eq!(inv.counts().await.expect("counts"), expected);
}

/// Stale uploads: only those started before the cutoff, oldest first, at most `limit`.
pub async fn inventory_lists_stale_uploads_oldest_first<F: Fixture>(f: F) {
    let (s, inv) = (f.store(), f.inventory());
    let started = [(30u8, 500), (31, 100), (32, 10_000), (33, 300)];
    for (n, at) in started {
        let up = UploadSession {
            started_at: at,
            ..session(n, "suite/app")
        };
        s.create_upload(&up).await.expect("create");
    }
    let id = |n: u8| UploadId::from_random([n; 16]);
    let stale = inv.stale_uploads(5_000, 10).await.expect("stale");
    assert_eq!(stale, [id(31), id(33), id(30)]);
    let first = inv.stale_uploads(5_000, 1).await.expect("stale");
    assert_eq!(first, [id(31)]);
    assert!(inv.stale_uploads(100, 10).await.expect("stale").is_empty());
    assert!(s.delete_upload(&id(31)).await.expect("delete"));
    let rest = inv.stale_uploads(5_000, 10).await.expect("stale");
    assert_eq!(rest, [id(33), id(30)]);
}
