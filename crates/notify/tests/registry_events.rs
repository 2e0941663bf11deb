//! A change made without HTTP (an import, garbage collection) reaches a webhook receiver with
//! registry:2's envelope: the real registry (filesystem storage, SQLite metadata and outbox)
//! emits, the notifier queues and delivers, and a real HTTP server on loopback receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_notify::{EndpointConfig, Notifier, Urls, WebhookSink, MEDIA_TYPE};
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::{Origin, Registry, RegistryOptions, Sinks};
use berth_storage::fs::FsBackend;
use bytes::Bytes;
use serde_json::{json, Value};

/// What the receiver got: each POST's content type and body.
type Posts = Arc<Mutex<Vec<(String, Value)>>>;

async fn take(State(p): State<Posts>, h: HeaderMap, body: Bytes) -> StatusCode {
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v = serde_json::from_slice(&body).unwrap();
    p.lock().unwrap().push((ct, v));
    StatusCode::OK
}

async fn receiver() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route("/hook", post(take))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, posts)
}

fn endpoint(url: String) -> EndpointConfig {
    EndpointConfig {
        name: "hook".into(),
        url,
        headers: vec![],
        timeout: Duration::from_secs(2),
        threshold: 3,
        backoff: Duration::from_millis(100),
        ignored_media_types: vec![],
        ignored_actions: vec![],
    }
}

fn body(b: &'static [u8]) -> berth_storage::ByteStream {
    Box::pin(futures::stream::once(
        async move { Ok(Bytes::from_static(b)) },
    ))
}

/// Every event the receiver got once it has `n`, checking each envelope's media type.
async fn wait_events(posts: &Posts, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let events: Vec<Value> = posts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(ct, v)| {
                assert_eq!(ct, MEDIA_TYPE);
                v["events"].as_array().unwrap().clone()
            })
            .collect();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the receiver never got {n} events: {:?}",
        posts.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_notifies_like_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("meta.sqlite"), SqliteOptions::default()).unwrap();
    let (url, posts) = receiver().await;
    let (notifier, handle) = Notifier::start(
        vec![endpoint(url)],
        Arc::new(db.clone()),
        "registry.internal:5000".into(),
    );
    let urls = Urls {
        host: Some("https://registry.example.com".into()),
        prefix: String::new(),
        tls: true,
    };
    let mut sinks = Sinks::default();
    sinks.push(Arc::new(WebhookSink::new(notifier, urls)));
    let storage = FsBackend::new(dir.path()).unwrap();
    let reg = Registry::new(Arc::new(storage), Arc::new(db), RegistryOptions::default())
        .with_events(sinks);

    let import = Origin::system("berth-import");
    let repo = RepoName::parse("airgap/app").unwrap();
    let config: &'static [u8] = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let cd = Digest::sha256_of(config);
    reg.put_blob(&repo, &cd, body(config), &import)
        .await
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let md = Digest::sha256_of(manifest.as_bytes());
    let tag = Reference::Tag(Tag::parse("1.0").unwrap());
    let bytes = Bytes::from(manifest.clone());
    reg.put_manifest(&repo, &tag, None, bytes, &[], &import)
        .await
        .unwrap();

    let events = wait_events(&posts, 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (blob, man) = (&events[0], &events[1]);
    assert_eq!(blob["action"], "push");
    assert_eq!(
        blob["target"],
        json!({
            "mediaType": "application/octet-stream",
            "size": config.len(),
            "digest": cd.as_str(),
            "length": config.len(),
            "repository": "airgap/app",
            "url": format!("https://registry.example.com/v2/airgap/app/blobs/{cd}"),
        })
    );
    assert_eq!(man["action"], "push");
    assert_eq!(
        man["target"],
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": manifest.len(),
            "digest": md.as_str(),
            "length": manifest.len(),
            "repository": "airgap/app",
            "url": format!("https://registry.example.com/v2/airgap/app/manifests/{md}"),
            "tag": "1.0",
        })
    );
    for e in &events {
        assert_eq!(e["actor"], json!({"name": "berth-import"}));
        assert_eq!(
            e["request"],
            json!({"id": "", "addr": "", "host": "", "method": "", "useragent": ""}),
            "no request behind an import"
        );
        assert_eq!(e["source"]["addr"], "registry.internal:5000");
        assert!(!e["source"]["instanceID"].as_str().unwrap().is_empty());
        assert!(!e["id"].as_str().unwrap().is_empty());
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_ne!(events[0]["id"], events[1]["id"]);
    handle.shutdown().await;
}
