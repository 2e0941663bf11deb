//! Every operation tells its subscribers exactly once, after it succeeded, with the caller's
//! origin; failures and HEAD-style reads tell nothing. Real filesystem storage and SQLite.

use std::sync::{Arc, Mutex};

use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_storage::fs::FsBackend;
use bytes::Bytes;
use futures::stream;

use crate::events::{Change, Event, EventSink, Origin, RequestFacts, Sinks};
use crate::{BlobRead, Mount, Registry, RegistryOptions};

/// One event, owned: kind, repository, digest, size, detail (media type, tags, source), actor,
/// request id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen(&'static str, String, String, u64, String, String, String);

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl EventSink for Recorder {
    fn emit(&self, e: &Event<'_>) {
        let (kind, size, detail) = match e.change {
            Change::BlobPushed { size } => ("blob-pushed", size, String::new()),
            Change::BlobMounted { size, from } => ("blob-mounted", size, from.to_string()),
            Change::BlobPulled { size } => ("blob-pulled", size, String::new()),
            Change::BlobDeleted => ("blob-deleted", 0, String::new()),
            Change::ManifestPushed {
                size,
                media_type,
                tags,
            } => {
                let tags: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
                let detail = format!("{media_type} {}", tags.join(","));
                ("manifest-pushed", size, detail)
            }
            Change::ManifestPulled {
                size,
                media_type,
                tag,
            } => {
                let detail = format!("{media_type} {}", tag.map_or("", |t| t.as_str()));
                ("manifest-pulled", size, detail)
            }
            Change::ManifestDeleted => ("manifest-deleted", 0, String::new()),
            Change::TagDeleted { tag } => ("tag-deleted", 0, tag.to_string()),
        };
        self.0.lock().unwrap().push(Seen(
            kind,
            e.repository.to_string(),
            e.digest.map(ToString::to_string).unwrap_or_default(),
            size,
            detail,
            e.origin.actor.to_owned(),
            e.origin
                .request
                .map(|r| r.id.to_owned())
                .unwrap_or_default(),
        ));
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    reg: Registry,
    seen: Arc<Recorder>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsBackend::new(dir.path()).unwrap();
    let meta =
        SqliteStore::open(&dir.path().join("meta.sqlite"), SqliteOptions::default()).unwrap();
    let seen = Arc::new(Recorder::default());
    let mut sinks = Sinks::default();
    sinks.push(seen.clone());
    let reg = Registry::new(
        Arc::new(storage),
        Arc::new(meta),
        RegistryOptions::default(),
    )
    .with_events(sinks);
    Fixture {
        _dir: dir,
        reg,
        seen,
    }
}

fn body(b: &'static [u8]) -> berth_storage::ByteStream {
    Box::pin(stream::once(async move { Ok(Bytes::from_static(b)) }))
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

const HTTP: Origin<'static> = Origin {
    actor: "alice",
    request: Some(RequestFacts {
        id: "req-1",
        addr: "127.0.0.1:1",
        host: "r",
        method: "PUT",
        user_agent: "t",
    }),
};
const GC: Origin<'static> = Origin::system("berth-gc");

fn seen(kind: &'static str, repo: &str, digest: &str, size: u64, detail: &str, o: &Origin) -> Seen {
    let id = o.request.map(|r| r.id).unwrap_or("");
    Seen(
        kind,
        repo.into(),
        digest.into(),
        size,
        detail.into(),
        o.actor.into(),
        id.into(),
    )
}

#[tokio::test]
async fn every_operation_tells_once_with_its_origin() {
    let f = fixture();
    let (a, b) = (repo("team/a"), repo("team/b"));
    let layer: &'static [u8] = b"layer bytes";
    let ld = Digest::sha256_of(layer);
    let l = ld.as_str();
    f.reg.put_blob(&a, &ld, body(layer), &HTTP).await.unwrap();
    let config: &'static [u8] = b"{}";
    let cd = Digest::sha256_of(config);
    let up = f.reg.start_upload(&a, Algorithm::Sha256).await.unwrap();
    f.reg
        .patch_upload(&a, &up.id, None, body(config))
        .await
        .unwrap();
    assert_eq!(
        f.seen.take(),
        vec![seen("blob-pushed", "team/a", l, 11, "", &HTTP)]
    );
    f.reg
        .finish_upload(&a, &up.id, &cd, None, None, &GC)
        .await
        .unwrap();
    assert_eq!(
        f.seen.take(),
        vec![seen("blob-pushed", "team/a", cd.as_str(), 2, "", &GC)],
        "a chunked upload tells once, when it completes"
    );

    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":11}}]}}"#
    );
    let md = Digest::sha256_of(manifest.as_bytes());
    let m = md.as_str();
    let (v1, v2) = (Tag::parse("v1").unwrap(), Tag::parse("v2").unwrap());
    let bytes = Bytes::from(manifest.clone());
    let (tag_ref, extra) = (Reference::Tag(v1.clone()), [v2.clone(), v1.clone()]);
    f.reg
        .put_manifest(&a, &tag_ref, None, bytes, &extra, &HTTP)
        .await
        .unwrap();
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let size = manifest.len() as u64;
    assert_eq!(
        f.seen.take(),
        vec![seen(
            "manifest-pushed",
            "team/a",
            m,
            size,
            &format!("{oci} v1,v2"),
            &HTTP
        )],
        "one event with every tag, each once"
    );

    f.reg.get_manifest(&a, &tag_ref).await.unwrap();
    assert!(f.seen.take().is_empty(), "a HEAD tells nothing");
    f.reg.pull_manifest(&a, &tag_ref, &HTTP).await.unwrap();
    let by_digest = Reference::Digest(md.clone());
    f.reg.pull_manifest(&a, &by_digest, &HTTP).await.unwrap();
    let read = f.reg.open_blob(&a, &ld, None, &HTTP).await.unwrap();
    assert!(matches!(read, BlobRead::Body(_)));
    f.reg
        .open_blob(&a, &ld, Some(crate::RangeSpec::From(0, Some(1))), &HTTP)
        .await
        .unwrap();
    assert_eq!(
        f.seen.take(),
        vec![
            seen(
                "manifest-pulled",
                "team/a",
                m,
                size,
                &format!("{oci} v1"),
                &HTTP
            ),
            seen(
                "manifest-pulled",
                "team/a",
                m,
                size,
                &format!("{oci} "),
                &HTTP
            ),
            seen("blob-pulled", "team/a", l, 11, "", &HTTP),
            seen("blob-pulled", "team/a", l, 11, "", &HTTP),
        ],
        "a range pull names the whole blob's size"
    );

    let mounted = f.reg.mount_blob(&b, &ld, Some(&a), &HTTP).await.unwrap();
    assert_eq!(mounted, Mount::Mounted(11));
    let started = f
        .reg
        .mount_blob(&b, &cd, Some(&repo("none")), &HTTP)
        .await
        .unwrap();
    assert!(matches!(started, Mount::Started(_)), "{started:?}");
    assert_eq!(
        f.seen.take(),
        vec![seen("blob-mounted", "team/b", l, 11, "team/a", &HTTP)],
        "a mount that falls back to an upload tells nothing yet"
    );

    f.reg.delete_manifest(&a, &tag_ref, &GC).await.unwrap();
    f.reg.delete_manifest(&a, &by_digest, &GC).await.unwrap();
    f.reg.delete_blob(&b, &ld, &GC).await.unwrap();
    assert_eq!(
        f.seen.take(),
        vec![
            seen("tag-deleted", "team/a", "", 0, "v1", &GC),
            seen("manifest-deleted", "team/a", m, 0, "", &GC),
            seen("blob-deleted", "team/b", l, 0, "", &GC),
        ]
    );
}

#[tokio::test]
async fn failures_tell_nothing() {
    let f = fixture();
    let a = repo("a");
    let wrong = Digest::sha256_of(b"something else");
    assert!(f
        .reg
        .put_blob(&a, &wrong, body(b"bytes"), &HTTP)
        .await
        .is_err());
    assert!(f.reg.open_blob(&a, &wrong, None, &HTTP).await.is_err());
    assert!(f.reg.delete_blob(&a, &wrong, &HTTP).await.is_err());
    let missing = Reference::Tag(Tag::parse("missing").unwrap());
    assert!(f.reg.pull_manifest(&a, &missing, &HTTP).await.is_err());
    assert!(f.reg.delete_manifest(&a, &missing, &HTTP).await.is_err());
    let bad = Bytes::from_static(b"{\"schemaVersion\":2}");
    assert!(f
        .reg
        .put_manifest(&a, &missing, None, bad, &[], &HTTP)
        .await
        .is_err());
    assert!(f.seen.take().is_empty());
}
