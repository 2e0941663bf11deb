//! Cases of the [`Manifests`](crate::Manifests) role: puts (with their checks), gets, deletes.

use super::*;

/// Bytes, digest and media type come back exactly as put, by tag and by digest.
pub async fn put_then_get_by_tag_and_digest_is_byte_exact<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let blobs = link(&*s, &r, &["config", "layer"]).await;
    let m = image("v1", &blobs);
    put(&*s, &r, &m, &["latest"]).await;
    for reference in [by_tag("latest"), by_digest(&m.digest)] {
        let got = s.get_manifest(&r, &reference).await.expect("get");
        let got = got.expect("manifest present");
        assert_eq!(got.digest, m.digest);
        assert_eq!(got.media_type, IMAGE);
        assert_eq!(got.bytes, m.bytes);
    }
}

/// Unknown repositories, tags and digests (and another repository's manifest) resolve to `None`.
pub async fn get_unknown_manifest_is_none<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let m = image("v1", &[]);
    put(&*s, &a, &m, &["latest"]).await;
    assert_eq!(digest_at(&*s, &a, &by_tag("missing")).await, None);
    assert_eq!(digest_at(&*s, &a, &by_digest(&blob("x"))).await, None);
    assert_eq!(digest_at(&*s, &b, &by_tag("latest")).await, None);
    assert_eq!(digest_at(&*s, &b, &by_digest(&m.digest)).await, None);
}

/// A put naming an unlinked blob fails with the first missing digest and writes nothing: no
/// manifest, no new tag, no tag moved.
pub async fn put_with_missing_blob_writes_nothing<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let linked = link(&*s, &r, &["config"]).await;
    let old = image("old", &linked);
    put(&*s, &r, &old, &["latest"]).await;
    let (gone1, gone2) = (blob("gone-1"), blob("gone-2"));
    let m = image("new", &[linked[0].clone(), gone1.clone(), gone2]);
    let err = s.put_manifest(&r, &m, &tags(&["latest", "v2"])).await;
    match err {
        Err(MetaError::MissingBlob(d)) => assert_eq!(d, gone1),
        other => panic!("expected MissingBlob({gone1}), got {other:?}"),
    }
    assert_eq!(digest_at(&*s, &r, &by_digest(&m.digest)).await, None);
    assert_eq!(
        digest_at(&*s, &r, &by_tag("latest")).await,
        Some(old.digest)
    );
    assert_eq!(digest_at(&*s, &r, &by_tag("v2")).await, None);
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["latest".to_string()]));
}

/// A failed first push does not create the repository.
pub async fn failed_put_into_new_repository_leaves_it_unknown<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/new");
    let m = image("v1", &[blob("gone")]);
    let err = s.put_manifest(&r, &m, &tags(&["latest"])).await;
    assert!(matches!(err, Err(MetaError::MissingBlob(_))), "{err:?}");
    assert_eq!(all_tags(&*s, &r).await, None);
    let repos = s.list_repositories(None, 100).await.expect("catalog");
    assert!(!repos.contains(&r.to_string()), "{repos:?}");
}

/// An index needs its children in the repository first.
pub async fn put_index_requires_children_in_repository<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/multi");
    let amd = image("amd64", &[]);
    let arm = image("arm64", &[]);
    put(&*s, &r, &amd, &[]).await;
    let idx = index("both", &[amd.digest.clone(), arm.digest.clone()]);
    match s.put_manifest(&r, &idx, &tags(&["latest"])).await {
        Err(MetaError::MissingManifest(d)) => assert_eq!(d, arm.digest),
        other => panic!("expected MissingManifest, got {other:?}"),
    }
    assert_eq!(digest_at(&*s, &r, &by_tag("latest")).await, None);
    put(&*s, &r, &arm, &[]).await;
    put(&*s, &r, &idx, &["latest"]).await;
    assert_eq!(
        digest_at(&*s, &r, &by_tag("latest")).await,
        Some(idx.digest)
    );
}

/// Blobs and child manifests of another repository do not count.
pub async fn references_are_scoped_to_the_repository<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let blobs = link(&*s, &a, &["layer"]).await;
    let m = image("v1", &blobs);
    put(&*s, &a, &m, &["latest"]).await;
    let err = s.put_manifest(&b, &m, &[]).await;
    assert!(matches!(err, Err(MetaError::MissingBlob(_))), "{err:?}");
    let idx = index("idx", std::slice::from_ref(&m.digest));
    let err = s.put_manifest(&b, &idx, &[]).await;
    assert!(matches!(err, Err(MetaError::MissingManifest(_))), "{err:?}");
}

/// Putting the same content again succeeds and changes nothing.
pub async fn reput_identical_manifest_is_idempotent<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let subject = image("subject", &[]);
    let m = referrer("sig", &subject.digest, "application/example");
    put(&*s, &r, &m, &["latest"]).await;
    put(&*s, &r, &m, &["latest"]).await;
    assert_eq!(
        digest_at(&*s, &r, &by_tag("latest")).await,
        Some(m.digest.clone())
    );
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["latest".to_string()]));
    let listed = referrer_digests(&*s, &r, &subject.digest, None).await;
    assert_eq!(listed, vec![m.digest]);
}

/// A manifest naming the same blob twice, or a put naming the same tag twice, is accepted.
pub async fn duplicate_references_and_tags_are_accepted<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let blobs = link(&*s, &r, &["same"]).await;
    let m = image("dup", &[blobs[0].clone(), blobs[0].clone()]);
    put(&*s, &r, &m, &["a", "a"]).await;
    let child = image("child", &[]);
    put(&*s, &r, &child, &[]).await;
    let idx = index("dup", &[child.digest.clone(), child.digest.clone()]);
    put(&*s, &r, &idx, &["b"]).await;
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["a".into(), "b".into()]));
}

/// A tag follows the latest put naming it; the old manifest stays reachable by digest.
pub async fn tags_move_to_the_latest_put<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let (m1, m2) = (image("v1", &[]), image("v2", &[]));
    put(&*s, &r, &m1, &["latest", "v1"]).await;
    put(&*s, &r, &m2, &["latest", "v2"]).await;
    assert_eq!(
        digest_at(&*s, &r, &by_tag("latest")).await,
        Some(m2.digest.clone())
    );
    assert_eq!(
        digest_at(&*s, &r, &by_tag("v1")).await,
        Some(m1.digest.clone())
    );
    assert_eq!(
        digest_at(&*s, &r, &by_digest(&m1.digest)).await,
        Some(m1.digest)
    );
    let expected = vec!["latest".to_string(), "v1".into(), "v2".into()];
    assert_eq!(all_tags(&*s, &r).await, Some(expected));
}

/// A put without tags stores the manifest under its digest only.
pub async fn put_without_tags_is_reachable_by_digest<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let m = image("untagged", &[]);
    put(&*s, &r, &m, &[]).await;
    assert_eq!(
        digest_at(&*s, &r, &by_digest(&m.digest)).await,
        Some(m.digest)
    );
    assert_eq!(all_tags(&*s, &r).await, Some(vec![]));
}

/// The first successful put makes the repository known and listed, without any blob link.
pub async fn put_creates_the_repository<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/fresh");
    put(&*s, &r, &image("artifact", &[]), &["v1"]).await;
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["v1".to_string()]));
    let repos = s.list_repositories(None, 100).await.expect("catalog");
    assert_eq!(repos, vec![r.to_string()]);
}

/// Deleting a manifest deletes every tag pointing at it, and only those.
pub async fn delete_manifest_removes_every_tag_pointing_at_it<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let (m1, m2) = (image("v1", &[]), image("v2", &[]));
    put(&*s, &r, &m1, &["a", "b"]).await;
    put(&*s, &r, &m2, &["c"]).await;
    assert!(s.delete_manifest(&r, &m1.digest).await.expect("delete"));
    assert_eq!(digest_at(&*s, &r, &by_digest(&m1.digest)).await, None);
    assert_eq!(digest_at(&*s, &r, &by_tag("a")).await, None);
    assert_eq!(digest_at(&*s, &r, &by_tag("b")).await, None);
    assert_eq!(digest_at(&*s, &r, &by_tag("c")).await, Some(m2.digest));
    assert_eq!(all_tags(&*s, &r).await, Some(vec!["c".to_string()]));
    assert!(!s
        .delete_manifest(&r, &m1.digest)
        .await
        .expect("delete again"));
    let unknown = repo("suite/none");
    assert!(!s
        .delete_manifest(&unknown, &m1.digest)
        .await
        .expect("delete"));
}

/// Deleting a tag leaves the manifest and its other tags.
pub async fn delete_tag_keeps_the_manifest<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let m = image("v1", &[]);
    put(&*s, &r, &m, &["a", "b"]).await;
    assert!(s.delete_tag(&r, &tag("a")).await.expect("delete tag"));
    assert!(!s.delete_tag(&r, &tag("a")).await.expect("delete tag again"));
    assert!(!s
        .delete_tag(&repo("suite/none"), &tag("b"))
        .await
        .expect("delete tag"));
    assert_eq!(digest_at(&*s, &r, &by_tag("a")).await, None);
    assert_eq!(
        digest_at(&*s, &r, &by_tag("b")).await,
        Some(m.digest.clone())
    );
    assert_eq!(
        digest_at(&*s, &r, &by_digest(&m.digest)).await,
        Some(m.digest)
    );
}

/// A manifest referenced by an index can still be deleted; the index stays.
pub async fn deleting_a_child_keeps_the_index<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/multi");
    let child = image("amd64", &[]);
    put(&*s, &r, &child, &[]).await;
    let idx = index("idx", std::slice::from_ref(&child.digest));
    put(&*s, &r, &idx, &["latest"]).await;
    assert!(s
        .delete_manifest(&r, &child.digest)
        .await
        .expect("delete child"));
    assert_eq!(
        digest_at(&*s, &r, &by_tag("latest")).await,
        Some(idx.digest.clone())
    );
    put(&*s, &r, &child, &[]).await;
    put(&*s, &r, &idx, &["latest"]).await;
}
