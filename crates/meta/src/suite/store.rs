//! Cases of the store as a whole: [`Health`](crate::Health), persistence across reopen, and
//! concurrent use of several roles at once.

use super::sessions::session;
use super::*;

/// `ping` answers on a healthy store.
pub async fn ping_succeeds<F: Fixture>(f: F) {
    f.store().ping().await.expect("ping");
}

/// Everything written is still there after closing and reopening (stores that persist).
pub async fn data_survives_reopen<F: Fixture>(f: F) {
    let r = repo("suite/app");
    let (m, sig, up) = {
        let s = f.store();
        let blobs = link(&*s, &r, &["config", "layer"]).await;
        let m = image("v1", &blobs);
        put(&*s, &r, &m, &["latest"]).await;
        let sig = referrer("sig", &m.digest, "a/sig");
        put(&*s, &r, &sig, &[]).await;
        let mut up = session(9, "suite/app");
        s.create_upload(&up).await.expect("create upload");
        up.hash_state = b"resume-here".to_vec();
        assert!(s
            .update_upload(&up.id, &up.hash_state)
            .await
            .expect("update"));
        (m, sig, up)
    };
    let Some(f) = f.reopen().await else {
        return;
    };
    let s = f.store();
    let got = s.get_manifest(&r, &by_tag("latest")).await.expect("get");
    assert_eq!(got.map(|g| g.bytes), Some(m.bytes.clone()));
    assert_eq!(s.blob_size(&r, &m.blobs[1]).await.expect("size"), Some(101));
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["latest".to_string()]));
    assert_eq!(
        referrer_digests(&*s, &r, &m.digest, None).await,
        vec![sig.digest]
    );
    assert_eq!(s.get_upload(&up.id).await.expect("get upload"), Some(up));
    let repos = s.list_repositories(None, 10).await.expect("catalog");
    assert_eq!(repos, vec![r.to_string()]);
}

/// 16 concurrent pushes of distinct manifests on distinct tags all succeed.
pub async fn concurrent_puts_on_distinct_tags_all_succeed<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/busy");
    let shared = link(&*s, &r, &["base"]).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, r, shared) = (Arc::clone(&s), r.clone(), shared.clone());
            tokio::spawn(async move {
                let own = blob(&format!("layer{i}"));
                s.link_blob(&r, &own, 10).await?;
                let m = image(&format!("m{i}"), &[shared[0].clone(), own]);
                s.put_manifest(&r, &m, &[tag(&format!("t{i:02}"))]).await?;
                Ok::<_, MetaError>(m.digest)
            })
        })
        .collect();
    let mut digests = Vec::new();
    for t in tasks {
        digests.push(t.await.expect("task").expect("concurrent put"));
    }
    let listed = all_tags(&*s, &r).await.expect("known");
    let expected: Vec<String> = (0..16).map(|i| format!("t{i:02}")).collect();
    assert_eq!(listed, expected);
    for (i, d) in digests.into_iter().enumerate() {
        let at = digest_at(&*s, &r, &by_tag(&format!("t{i:02}"))).await;
        assert_eq!(at, Some(d));
    }
}

/// 16 concurrent pushes of the same manifest and tag all succeed and leave one manifest.
pub async fn concurrent_identical_puts_are_idempotent<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/same");
    let blobs = link(&*s, &r, &["layer"]).await;
    let m = image("same", &blobs);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (s, r, m) = (Arc::clone(&s), r.clone(), m.clone());
            tokio::spawn(async move { s.put_manifest(&r, &m, &[tag("latest")]).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("concurrent identical put");
    }
    assert_eq!(digest_at(&*s, &r, &by_tag("latest")).await, Some(m.digest));
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["latest".to_string()]));
}

/// Readers keep reading while writers write; nothing surfaces a lock error.
pub async fn reads_and_writes_interleave_without_errors<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/mixed");
    put(&*s, &r, &image("base", &[]), &["latest"]).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (s, r) = (Arc::clone(&s), r.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let m = image(&format!("w{w}-{i}"), &[]);
                s.put_manifest(&r, &m, &[tag(&format!("w{w}"))]).await?;
            }
            Ok::<_, MetaError>(())
        }));
    }
    for _ in 0..8 {
        let (s, r) = (Arc::clone(&s), r.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let got = s.get_manifest(&r, &by_tag("latest")).await?;
                assert!(got.is_some());
                s.list_tags(&r, None, 100).await?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await
            .expect("task")
            .expect("no database error under load");
    }
    assert_eq!(all_tags(&*s, &r).await.map(|t| t.len()), Some(9));
}
