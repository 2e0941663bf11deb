//! Cases of the [`Listing`](crate::Listing) role: tag pages, the catalog and referrers.

use super::*;

/// A repository never seen is `None`, not an empty list.
pub async fn list_tags_of_unknown_repository_is_none<F: Fixture>(f: F) {
    let s = f.store();
    assert_eq!(all_tags(&*s, &repo("suite/none")).await, None);
    let empty = s
        .list_tags(&repo("suite/none"), None, 0)
        .await
        .expect("list");
    assert_eq!(empty, None);
}

/// A repository known through a blob link, or whose tags were all deleted, lists no tags.
pub async fn list_tags_of_repository_without_tags_is_empty<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/blobs-only"), repo("suite/untagged"));
    link(&*s, &a, &["layer"]).await;
    assert_eq!(all_tags(&*s, &a).await, Some(vec![]));
    put(&*s, &b, &image("v1", &[]), &["v1"]).await;
    assert!(s.delete_tag(&b, &tag("v1")).await.expect("delete tag"));
    assert_eq!(all_tags(&*s, &b).await, Some(vec![]));
}

/// Byte order (uppercase before `_` before lowercase; a prefix first), `> last`, `limit`.
pub async fn list_tags_is_byte_ordered_after_last_within_limit<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let names = ["b", "B", "a", "_x", "a-1", "A", "0", "a.1", "Z9", "a_1"];
    put(&*s, &r, &image("v1", &[]), &names).await;
    let expected: Vec<String> = sorted(&names).iter().map(|n| n.to_string()).collect();
    assert_eq!(all_tags(&*s, &r).await, Some(expected.clone()));
    let page = s.list_tags(&r, Some("Z9"), 3).await.expect("list");
    assert_eq!(page, Some(expected[4..7].to_vec()));
    let page = s.list_tags(&r, Some("Y"), 1).await.expect("list");
    assert_eq!(page, Some(vec!["Z9".to_string()]));
    let page = s.list_tags(&r, Some("b"), 10).await.expect("list");
    assert_eq!(page, Some(vec![]));
    let page = s.list_tags(&r, None, 0).await.expect("list");
    assert_eq!(page, Some(vec![]));
}

/// 250 tags walk in exactly three pages of at most 100 (the last one short).
pub async fn list_tags_walks_250_tags_in_3_pages<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/many");
    let names: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    put(&*s, &r, &image("v1", &[]), &refs).await;
    let (mut walked, mut sizes, mut last) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let page = s.list_tags(&r, last.as_deref(), 100).await.expect("list");
        let page = page.expect("repository known");
        sizes.push(page.len());
        last = page.last().cloned();
        walked.extend(page);
        if sizes[sizes.len() - 1] < 100 {
            break;
        }
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(walked, names);
}

/// Only repositories holding a manifest are listed (not blob-only ones, not emptied ones).
pub async fn list_repositories_lists_only_repositories_with_manifests<F: Fixture>(f: F) {
    let s = f.store();
    let (full, blobs, emptied) = (
        repo("suite/full"),
        repo("suite/blobs"),
        repo("suite/emptied"),
    );
    put(&*s, &full, &image("v1", &[]), &["v1"]).await;
    link(&*s, &blobs, &["layer"]).await;
    let m = image("gone", &[]);
    put(&*s, &emptied, &m, &["v1"]).await;
    assert!(s
        .delete_manifest(&emptied, &m.digest)
        .await
        .expect("delete"));
    let repos = s.list_repositories(None, 100).await.expect("catalog");
    assert_eq!(repos, vec![full.to_string()]);
}

/// Catalog pages are in byte order, strictly after `last`, at most `limit`.
pub async fn list_repositories_paginates_in_byte_order<F: Fixture>(f: F) {
    let s = f.store();
    let names = ["b/x", "a_b", "a/b", "a.b", "a-b", "a", "a0"];
    for name in names {
        put(&*s, &repo(name), &image(name, &[]), &["v1"]).await;
    }
    let expected: Vec<String> = sorted(&names).iter().map(|n| n.to_string()).collect();
    let all = s
        .list_repositories(None, usize::MAX)
        .await
        .expect("catalog");
    assert_eq!(all, expected);
    let (mut walked, mut last) = (Vec::new(), None::<String>);
    loop {
        let page = s.list_repositories(last.as_deref(), 3).await.expect("page");
        assert!(page.len() <= 3);
        let done = page.len() < 3;
        last = page.last().cloned();
        walked.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(walked, expected);
    assert_eq!(
        s.list_repositories(None, 0).await.expect("catalog"),
        Vec::<String>::new()
    );
    let after = s.list_repositories(Some("a/b"), 2).await.expect("catalog");
    assert_eq!(after, vec!["a0".to_string(), "a_b".to_string()]);
}

/// Referrers carry media type, digest, size, artifact type and annotations; manifests without
/// that subject, or in another repository, are not listed.
pub async fn referrers_describe_manifests_with_the_subject<F: Fixture>(f: F) {
    let s = f.store();
    let (r, other) = (repo("suite/app"), repo("suite/other"));
    let subject = image("subject", &[]);
    put(&*s, &r, &subject, &["latest"]).await;
    let sig = NewManifest {
        annotations_json: Some(r#"{"org.example.signed":"yes","b":"2"}"#.into()),
        ..referrer("sig", &subject.digest, "application/vnd.example.sig")
    };
    put(&*s, &r, &sig, &[]).await;
    put(&*s, &r, &image("unrelated", &[]), &[]).await;
    put(
        &*s,
        &other,
        &referrer("elsewhere", &subject.digest, "x/y"),
        &[],
    )
    .await;
    let found = s.referrers(&r, &subject.digest, None, None, 100).await;
    let found = found.expect("referrers");
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.media_type, IMAGE);
    assert_eq!(d.digest, sig.digest);
    assert_eq!(d.size, sig.bytes.len() as u64);
    assert_eq!(
        d.artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    let annotations = d.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get("org.example.signed").map(String::as_str),
        Some("yes")
    );
    assert_eq!(annotations.len(), 2);
    assert_eq!((d.urls.as_ref(), d.platform.as_ref()), (None, None));
    let none = s.referrers(&r, &sig.digest, None, None, 100).await;
    assert!(none.expect("referrers").is_empty());
    let unknown = s
        .referrers(&repo("suite/none"), &subject.digest, None, None, 10)
        .await;
    assert!(unknown.expect("referrers").is_empty());
}

/// The artifact type filter keeps exactly the matching referrers, in digest order.
pub async fn referrers_filter_by_artifact_type<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let subject = blob("subject-manifest");
    let (mut sigs, mut sboms) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let (kind, list) = if i % 2 == 0 {
            ("sig", &mut sigs)
        } else {
            ("sbom", &mut sboms)
        };
        let m = referrer(
            &format!("{kind}{i}"),
            &subject,
            &format!("application/{kind}"),
        );
        put(&*s, &r, &m, &[]).await;
        list.push(m.digest);
    }
    let got = referrer_digests(&*s, &r, &subject, Some("application/sig")).await;
    assert_eq!(got, sorted(&sigs));
    let got = referrer_digests(&*s, &r, &subject, Some("application/sbom")).await;
    assert_eq!(got, sorted(&sboms));
    assert!(referrer_digests(&*s, &r, &subject, Some("x/none"))
        .await
        .is_empty());
    let all = [sigs, sboms].concat();
    assert_eq!(
        referrer_digests(&*s, &r, &subject, None).await,
        sorted(&all)
    );
}

/// Referrers page by digest: strictly after `last`, at most `limit`, filter applied first.
pub async fn referrers_paginate_by_digest<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let subject = blob("subject-manifest");
    let mut digests = Vec::new();
    for i in 0..7 {
        let kind = if i < 5 { "a/sig" } else { "a/sbom" };
        let m = referrer(&format!("r{i}"), &subject, kind);
        put(&*s, &r, &m, &[]).await;
        if i < 5 {
            digests.push(m.digest);
        }
    }
    let expected = sorted(&digests);
    let (mut walked, mut last, mut pages) = (Vec::new(), None::<Digest>, 0);
    loop {
        let page = s
            .referrers(&r, &subject, Some("a/sig"), last.as_ref(), 2)
            .await;
        let page = page.expect("referrers");
        pages += 1;
        let done = page.len() < 2;
        last = page.last().map(|d| d.digest.clone());
        walked.extend(page.into_iter().map(|d| d.digest));
        if done {
            break;
        }
    }
    assert_eq!((walked, pages), (expected, 3));
    assert!(s
        .referrers(&r, &subject, None, None, 0)
        .await
        .expect("ref")
        .is_empty());
}

/// A deleted referrer disappears from its subject's listing.
pub async fn deleted_referrer_is_no_longer_listed<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let subject = image("subject", &[]);
    put(&*s, &r, &subject, &["latest"]).await;
    let (keep, gone) = (
        referrer("keep", &subject.digest, "a/b"),
        referrer("gone", &subject.digest, "a/b"),
    );
    put(&*s, &r, &keep, &[]).await;
    put(&*s, &r, &gone, &["sig"]).await;
    assert!(s.delete_manifest(&r, &gone.digest).await.expect("delete"));
    assert_eq!(
        referrer_digests(&*s, &r, &subject.digest, None).await,
        vec![keep.digest]
    );
}

/// Referrers do not depend on their subject existing (pushed before it, or outliving it).
pub async fn deleting_the_subject_keeps_referrers_listable<F: Fixture>(f: F) {
    let s = f.store();
    let r = repo("suite/app");
    let subject = image("subject", &[]);
    let sig = referrer("sig", &subject.digest, "a/sig");
    put(&*s, &r, &sig, &[]).await;
    put(&*s, &r, &subject, &["latest"]).await;
    assert!(s
        .delete_manifest(&r, &subject.digest)
        .await
        .expect("delete"));
    let listed = referrer_digests(&*s, &r, &subject.digest, None).await;
    assert_eq!(listed, vec![sig.digest.clone()]);
    assert_eq!(
        digest_at(&*s, &r, &by_digest(&sig.digest)).await,
        Some(sig.digest)
    );
}
