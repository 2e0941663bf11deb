//! Cases of the [`UploadSessions`](crate::UploadSessions) role: create, read, update, delete and
//! complete (close the session and link its blob in one transaction).

use super::*;

pub(super) fn session(n: u8, r: &str) -> UploadSession {
    UploadSession {
        id: UploadId::from_random([n; 16]),
        repo: repo(r),
        started_at: 1_700_000_000 + i64::from(n),
        hash_state: Vec::new(),
    }
}

/// Sessions are created, read back field for field, and deleted once.
pub async fn upload_sessions_round_trip<F: Fixture>(f: F) {
    let s = f.store();
    let (one, two) = (session(1, "suite/app"), session(2, "suite/other"));
    s.create_upload(&one).await.expect("create");
    s.create_upload(&two).await.expect("create");
    assert_eq!(s.get_upload(&one.id).await.expect("get"), Some(one.clone()));
    assert!(s.delete_upload(&one.id).await.expect("delete"));
    assert!(!s
        .update_upload(&one.id, b"state")
        .await
        .expect("update gone"));
    assert!(!s.delete_upload(&one.id).await.expect("delete again"));
    assert_eq!(s.get_upload(&one.id).await.expect("get"), None);
    assert_eq!(s.get_upload(&two.id).await.expect("get"), Some(two));
    // An upload alone does not make a repository known.
    assert_eq!(all_tags(&*s, &repo("suite/app")).await, None);
}

/// `update_upload` replaces the hash state (byte-exact, any length) of that session only.
pub async fn update_upload_replaces_the_hash_state<F: Fixture>(f: F) {
    let s = f.store();
    let (one, two) = (session(3, "suite/app"), session(4, "suite/app"));
    s.create_upload(&one).await.expect("create");
    s.create_upload(&two).await.expect("create");
    let state: Vec<u8> = (0..=255).collect();
    assert!(s.update_upload(&one.id, &state).await.expect("update"));
    let got = s.get_upload(&one.id).await.expect("get").expect("present");
    assert_eq!(got.hash_state, state);
    assert_eq!(
        (got.repo, got.started_at),
        (one.repo.clone(), one.started_at)
    );
    assert!(s.update_upload(&one.id, b"\x00next").await.expect("update"));
    let got = s.get_upload(&one.id).await.expect("get").expect("present");
    assert_eq!(got.hash_state, b"\x00next".to_vec());
    assert_eq!(s.get_upload(&two.id).await.expect("get"), Some(two));
}

/// Completing a session links its blob into the session's repository (making it known) and
/// forgets the session; the session's id then completes nothing more.
pub async fn complete_upload_links_the_blob_and_closes_the_session<F: Fixture>(f: F) {
    let s = f.store();
    let (r, up, other) = (
        repo("suite/app"),
        session(5, "suite/app"),
        session(6, "suite/app"),
    );
    s.create_upload(&up).await.expect("create");
    s.create_upload(&other).await.expect("create");
    let d = blob("uploaded");
    assert!(s
        .complete_upload(&r, &d, 77, &up.id)
        .await
        .expect("complete"));
    assert_eq!(s.get_upload(&up.id).await.expect("get"), None);
    assert_eq!(s.blob_size(&r, &d).await.expect("size"), Some(77));
    assert_eq!(all_tags(&*s, &r).await, Some(vec![]));
    assert!(!s.complete_upload(&r, &d, 77, &up.id).await.expect("again"));
    assert!(!s.delete_upload(&up.id).await.expect("delete completed"));
    assert_eq!(s.get_upload(&other.id).await.expect("get"), Some(other));
}

/// Completing a session that does not exist, or belongs to another repository, writes nothing:
/// no blob link, no repository, and the other repository's session stays open.
pub async fn complete_upload_of_an_unknown_session_writes_nothing<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let d = blob("orphan");
    let never = UploadId::from_random([7; 16]);
    assert!(!s.complete_upload(&a, &d, 5, &never).await.expect("unknown"));
    assert_eq!(s.blob_size(&a, &d).await.expect("size"), None);
    assert_eq!(all_tags(&*s, &a).await, None);
    let up = session(8, "suite/a");
    s.create_upload(&up).await.expect("create");
    assert!(!s
        .complete_upload(&b, &d, 5, &up.id)
        .await
        .expect("other repo"));
    assert_eq!(s.blob_size(&b, &d).await.expect("size"), None);
    assert_eq!(all_tags(&*s, &b).await, None);
    assert_eq!(s.get_upload(&up.id).await.expect("get"), Some(up.clone()));
    assert!(s.delete_upload(&up.id).await.expect("cancel"));
    assert!(!s
        .complete_upload(&a, &d, 5, &up.id)
        .await
        .expect("cancelled"));
    assert_eq!(s.blob_size(&a, &d).await.expect("size"), None);
}

/// A blob already linked (pushed before, or mounted) completes like a new one and keeps its link.
pub async fn complete_upload_of_an_already_linked_blob_succeeds<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let d = link(&*s, &r, &["layer"]).await.remove(0);
    let up = session(10, "suite/app");
    s.create_upload(&up).await.expect("create");
    assert!(s
        .complete_upload(&r, &d, 100, &up.id)
        .await
        .expect("complete"));
    assert_eq!(s.blob_size(&r, &d).await.expect("size"), Some(100));
    assert_eq!(s.get_upload(&up.id).await.expect("get"), None);
}

/// Eight completions of one session race: exactly one wins. Meanwhile readers check both
/// orders of observation: once the session is seen gone the blob must be linked, and once the
/// blob is seen linked the session must be gone (so it was never one without the other).
pub async fn complete_upload_is_atomic_and_happens_once<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/race");
    let d = blob("raced");
    for n in 0..8u8 {
        let up = session(100 + n, "suite/race");
        s.create_upload(&up).await.expect("create");
        let readers: Vec<_> = (0..2)
            .map(|i| {
                tokio::spawn(observe(
                    Arc::clone(&s),
                    r.clone(),
                    d.clone(),
                    up.id.clone(),
                    i,
                ))
            })
            .collect();
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (s, r, d, id) = (Arc::clone(&s), r.clone(), d.clone(), up.id.clone());
                tokio::spawn(async move { s.complete_upload(&r, &d, 9, &id).await })
            })
            .collect();
        let mut won = 0;
        for t in racers {
            won += usize::from(t.await.expect("task").expect("complete"));
        }
        assert_eq!(won, 1, "round {n}: one completion wins");
        for t in readers {
            t.await.expect("reader");
        }
        assert!(s.unlink_blob(&r, &d).await.expect("unlink"), "round {n}");
    }
}

/// Reads session and link in the order `order` picks until the session is gone, checking that
/// the first observation implies the second.
async fn observe(s: Arc<dyn MetaStore>, r: RepoName, d: Digest, id: UploadId, order: usize) {
    for _ in 0..10_000 {
        if order == 0 {
            let open = s.get_upload(&id).await.expect("get").is_some();
            let linked = s.blob_size(&r, &d).await.expect("size").is_some();
            assert!(open || linked, "session gone before the blob was linked");
            if !open {
                return;
            }
        } else {
            let linked = s.blob_size(&r, &d).await.expect("size").is_some();
            let open = s.get_upload(&id).await.expect("get").is_some();
            assert!(!(linked && open), "blob linked while the session was open");
            if linked {
                return;
            }
        }
        tokio::task::yield_now().await;
    }
}
