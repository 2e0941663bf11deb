//! The metadata-store conformance suite: the same cases against every implementation, in one
//! part per role ([`BlobLinks`](crate::BlobLinks), [`Manifests`](crate::Manifests),
//! [`Listing`](crate::Listing), [`UploadSessions`](crate::UploadSessions), the store as a whole,
//! and the operations side's [`Outbox`] and [`Inventory`]), so SQLite and PostgreSQL are held to
//! exactly the same behaviour.
//!
//! Each case is a public `async fn` taking a [`Fixture`], written only against the traits; the
//! [`meta_suite!`](crate::meta_suite) macro expands into one `#[tokio::test]` per case so a failure
//! names the case:
//!
//! ```ignore
//! mod conformance {
//!     berth_meta::meta_suite!(my_fixture());   // any expression of type impl Future<Output = F>
//! }
//! ```
//!
//! `meta_suite!(@blob_links my_fixture())` (likewise `@manifests`, `@listing`,
//! `@upload_sessions`, `@store`, `@outbox`, `@inventory`) expands one part only.
//!
//! The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) and, from outside this
//! crate, the `suite` feature. A store that persists implements [`Fixture::reopen`] so the suite
//! also checks that data survives closing and reopening.

// Test-suite code (compiled only for tests through the `suite` feature): a failed unwrap/expect
// is how a case fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Digest, Reference, RepoName, Tag, UploadId};
use bytes::Bytes;

use crate::ops::{Counts, Inventory, Outbox};
use crate::{MetaError, MetaStore, NewManifest, UploadSession};

/// A store under test, plus whatever keeps its data alive (a temporary directory, a schema).
/// The three views are of the same store (clones sharing its connections).
#[async_trait]
pub trait Fixture: Send + Sized + 'static {
    /// The store under test, as the registry holds it.
    fn store(&self) -> Arc<dyn MetaStore>;

    /// The same store's webhook outbox.
    fn outbox(&self) -> Arc<dyn Outbox>;

    /// The same store's inventory.
    fn inventory(&self) -> Arc<dyn Inventory>;

    /// Closes the store and opens it again on the same data. `None` (the default) for stores that
    /// do not persist; the reopen cases then pass trivially.
    async fn reopen(self) -> Option<Self> {
        None
    }
}

/// A fixture for a store without persistence.
pub struct Ephemeral<S>(pub Arc<S>);

impl<S: MetaStore + Outbox + Inventory + 'static> Fixture for Ephemeral<S> {
    fn store(&self) -> Arc<dyn MetaStore> {
        Arc::clone(&self.0) as Arc<dyn MetaStore>
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::clone(&self.0) as Arc<dyn Outbox>
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::clone(&self.0) as Arc<dyn Inventory>
    }
}

/// Expands into one `#[tokio::test]` per conformance case, each building its store with `$make`
/// (an expression evaluating to a future of a [`Fixture`](crate::suite::Fixture)); with a
/// leading `@part`, only that part's cases.
#[macro_export]
macro_rules! meta_suite {
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::suite::$case($make.await).await;
            }
        )+
    };
    (@concurrent $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::suite::$case($make.await).await;
            }
        )+
    };
    (@blob_links $make:expr) => {
        $crate::meta_suite!(@cases $make;
            link_blob_is_idempotent_and_scoped,
            unlink_blob_reports_whether_it_was_linked,
        );
    };
    (@manifests $make:expr) => {
        $crate::meta_suite!(@cases $make;
            put_then_get_by_tag_and_digest_is_byte_exact,
            get_unknown_manifest_is_none,
            put_with_missing_blob_writes_nothing,
            failed_put_into_new_repository_leaves_it_unknown,
            put_index_requires_children_in_repository,
            references_are_scoped_to_the_repository,
            reput_identical_manifest_is_idempotent,
            duplicate_references_and_tags_are_accepted,
            tags_move_to_the_latest_put,
            put_without_tags_is_reachable_by_digest,
            put_creates_the_repository,
            delete_manifest_removes_every_tag_pointing_at_it,
            delete_tag_keeps_the_manifest,
            deleting_a_child_keeps_the_index,
        );
    };
    (@listing $make:expr) => {
        $crate::meta_suite!(@cases $make;
            list_tags_of_unknown_repository_is_none,
            list_tags_of_repository_without_tags_is_empty,
            list_tags_is_byte_ordered_after_last_within_limit,
            list_tags_walks_250_tags_in_3_pages,
            list_repositories_lists_only_repositories_with_manifests,
            list_repositories_paginates_in_byte_order,
            referrers_describe_manifests_with_the_subject,
            referrers_filter_by_artifact_type,
            referrers_paginate_by_digest,
            deleted_referrer_is_no_longer_listed,
            deleting_the_subject_keeps_referrers_listable,
        );
    };
    (@upload_sessions $make:expr) => {
        $crate::meta_suite!(@cases $make;
            upload_sessions_round_trip,
            update_upload_replaces_the_hash_state,
            complete_upload_links_the_blob_and_closes_the_session,
            complete_upload_of_an_unknown_session_writes_nothing,
            complete_upload_of_an_already_linked_blob_succeeds,
        );
        $crate::meta_suite!(@concurrent $make;
            complete_upload_is_atomic_and_happens_once,
        );
    };
    (@store $make:expr) => {
        $crate::meta_suite!(@cases $make;
            ping_succeeds,
            data_survives_reopen,
        );
        $crate::meta_suite!(@concurrent $make;
            concurrent_puts_on_distinct_tags_all_succeed,
            concurrent_identical_puts_are_idempotent,
            reads_and_writes_interleave_without_errors,
        );
    };
    (@outbox $make:expr) => {
        $crate::meta_suite!(@cases $make;
            outbox_is_a_fifo_per_endpoint,
            outbox_survives_reopen,
            one_lease_holder_per_endpoint_until_it_runs_out,
        );
    };
    (@inventory $make:expr) => {
        $crate::meta_suite!(@cases $make;
            inventory_counts_what_the_store_holds,
            inventory_lists_stale_uploads_oldest_first,
        );
    };
    ($make:expr) => {
        $crate::meta_suite!(@blob_links $make);
        $crate::meta_suite!(@manifests $make);
        $crate::meta_suite!(@listing $make);
        $crate::meta_suite!(@upload_sessions $make);
        $crate::meta_suite!(@store $make);
        $crate::meta_suite!(@outbox $make);
        $crate::meta_suite!(@inventory $make);
    };
}

mod links;
mod listing;
mod manifests;
mod ops;
mod sessions;
mod store;

pub use links::*;
pub use listing::*;
pub use manifests::*;
pub use ops::*;
pub use sessions::*;
pub use store::*;

// ---------------------------------------------------------------------------------------------
// Test data, shared by the case modules

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("valid repository name")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid tag")
}

fn tags(names: &[&str]) -> Vec<Tag> {
    names.iter().map(|n| tag(n)).collect()
}

fn blob(name: &str) -> Digest {
    Digest::sha256_of(format!("blob {name}").as_bytes())
}

fn by_tag(name: &str) -> Reference {
    Reference::Tag(tag(name))
}

fn by_digest(d: &Digest) -> Reference {
    Reference::Digest(d.clone())
}

/// A manifest whose bytes are unique per `body`; the store never parses them.
fn manifest(media_type: &str, body: &str) -> NewManifest {
    let bytes = Bytes::from(format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{media_type}\",\"body\":\"{body}\"}}"
    ));
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: media_type.to_string(),
        bytes,
        blobs: Vec::new(),
        children: Vec::new(),
        subject: None,
        artifact_type: None,
        annotations_json: None,
    }
}

fn image(body: &str, blobs: &[Digest]) -> NewManifest {
    NewManifest {
        blobs: blobs.to_vec(),
        ..manifest(IMAGE, body)
    }
}

fn index(body: &str, children: &[Digest]) -> NewManifest {
    NewManifest {
        children: children.to_vec(),
        ..manifest(INDEX, body)
    }
}

fn referrer(body: &str, subject: &Digest, artifact_type: &str) -> NewManifest {
    NewManifest {
        subject: Some(subject.clone()),
        artifact_type: Some(artifact_type.to_string()),
        ..manifest(IMAGE, body)
    }
}

/// Links a blob per name into `r` and returns their digests.
async fn link(s: &dyn MetaStore, r: &RepoName, names: &[&str]) -> Vec<Digest> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let d = blob(name);
        s.link_blob(r, &d, 100 + i as u64).await.expect("link blob");
        out.push(d);
    }
    out
}

async fn put(s: &dyn MetaStore, r: &RepoName, m: &NewManifest, t: &[&str]) {
    s.put_manifest(r, m, &tags(t)).await.expect("put manifest");
}

async fn digest_at(s: &dyn MetaStore, r: &RepoName, reference: &Reference) -> Option<Digest> {
    let found = s.get_manifest(r, reference).await.expect("get manifest");
    found.map(|m| m.digest)
}

async fn all_tags(s: &dyn MetaStore, r: &RepoName) -> Option<Vec<String>> {
    s.list_tags(r, None, usize::MAX).await.expect("list tags")
}

async fn referrer_digests(
    s: &dyn MetaStore,
    r: &RepoName,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Vec<Digest> {
    let found = s
        .referrers(r, subject, artifact_type, None, usize::MAX)
        .await
        .expect("referrers");
    found.into_iter().map(|d| d.digest).collect()
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort();
    v
}
