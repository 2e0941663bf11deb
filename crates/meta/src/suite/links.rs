//! Cases of the [`BlobLinks`](crate::BlobLinks) role: linking, sizes, unlinking.

use super::*;

/// Linking twice is fine; the size is reported only in the repository it was linked into.
pub async fn link_blob_is_idempotent_and_scoped<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let d = blob("one");
    s.link_blob(&a, &d, 42).await.expect("link");
    s.link_blob(&a, &d, 42).await.expect("link again");
    assert_eq!(s.blob_size(&a, &d).await.expect("size"), Some(42));
    assert_eq!(s.blob_size(&b, &d).await.expect("size"), None);
    assert_eq!(s.blob_size(&a, &blob("other")).await.expect("size"), None);
}

/// `unlink_blob` reports whether a link existed and removes it.
pub async fn unlink_blob_reports_whether_it_was_linked<F: Fixture>(f: F) {
    let s = f.store();
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let d = link(&*s, &a, &["one"]).await.remove(0);
    s.link_blob(&b, &d, 100).await.expect("link b");
    assert!(!s.unlink_blob(&a, &blob("other")).await.expect("unlink"));
    assert!(s.unlink_blob(&a, &d).await.expect("unlink"));
    assert!(!s.unlink_blob(&a, &d).await.expect("unlink again"));
    assert_eq!(s.blob_size(&a, &d).await.expect("size"), None);
    assert_eq!(s.blob_size(&b, &d).await.expect("size"), Some(100));
    assert!(!s
        .unlink_blob(&repo("suite/none"), &d)
        .await
        .expect("unlink"));
}
