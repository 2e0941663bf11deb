//! Config loading: every key, overrides, warnings, errors, and the seeds' compose blocks.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ok(yaml: &str, vars: &[(&str, &str)]) -> Loaded {
    from_text(yaml, env(vars)).unwrap_or_else(|e| panic!("{e}"))
}

fn err_key(yaml: &str, vars: &[(&str, &str)]) -> String {
    match from_text(yaml, env(vars)) {
        Err(ConfigError::Value { key, .. }) => key,
        other => panic!("expected a value error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let l = ok("", &[]);
    let s = &l.settings;
    assert_eq!(s.addr, ":5000");
    assert_eq!(s.bind_addr(), "0.0.0.0:5000");
    assert_eq!(
        s.storage,
        StorageSettings::Filesystem {
            root: "./data".into()
        }
    );
    assert_eq!(
        s.database,
        DatabaseSettings::Sqlite {
            path: PathBuf::from("./data/berth-meta.sqlite")
        }
    );
    assert!(!s.delete_enabled && s.redirect && s.tls.is_none() && s.debug.is_none());
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    assert_eq!(s.log.level, "info");
    assert!(!s.log.json && s.log.access_log);
    let purge = s.upload_purging.as_ref().unwrap();
    assert_eq!(purge.age, Duration::from_secs(168 * 3600));
    assert!(s.health.enabled && s.health.threshold == 3);
    assert_eq!(
        s.limits,
        LimitSettings {
            body_min_rate: 1024,
            body_timeout: Duration::from_secs(30),
            connections_per_client: 256,
            max_connections: None,
        }
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn http_limits_from_file_and_env() {
    let l = ok(
        "http:\n  limits:\n    bodyminrate: 100\n    bodytimeout: 1m\n    connectionsperclient: 0\n    maxconnections: 5000\n",
        &[],
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        l.settings.limits,
        LimitSettings {
            body_min_rate: 100,
            body_timeout: Duration::from_secs(60),
            connections_per_client: 0,
            max_connections: Some(5000),
        }
    );
    let l = ok(
        "",
        &[
            ("REGISTRY_HTTP_LIMITS_BODYMINRATE", "0"),
            ("REGISTRY_HTTP_LIMITS_BODYTIMEOUT", "0s"),
            ("REGISTRY_HTTP_LIMITS_CONNECTIONSPERCLIENT", "16"),
            ("REGISTRY_HTTP_LIMITS_MAXCONNECTIONS", "0"),
        ],
    );
    let limits = l.settings.limits;
    assert_eq!(
        (limits.body_min_rate, limits.body_timeout),
        (0, Duration::ZERO)
    );
    assert_eq!(
        (limits.connections_per_client, limits.max_connections),
        (16, Some(0))
    );
    for (yaml, key) in [
        ("bodytimeout: 500ms", "http.limits.bodytimeout"),
        ("bodytimeout: soon", "http.limits.bodytimeout"),
        ("bodyminrate: -1", "http.limits.bodyminrate"),
        ("bodyminrate: 5000000000", "http.limits.bodyminrate"),
        (
            "connectionsperclient: many",
            "http.limits.connectionsperclient",
        ),
        ("maxconnections: 5000000000", "http.limits.maxconnections"),
    ] {
        assert_eq!(
            err_key(&format!("http:\n  limits:\n    {yaml}\n"), &[]),
            key
        );
    }
}

const FULL: &str = r#"
version: 0.1
log:
  level: debug
  formatter: json
  fields:
    service: registry
    environment: staging
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
    maxthreads: 100
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 72h
      interval: 1h
      dryrun: true
http:
  addr: 127.0.0.1:5001
  net: tcp
  prefix: /registry/
  host: https://registry.example.com/
  secret: asecretforlocaldevelopment
  relativeurls: true
  draintimeout: 60s
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
    clientcas: [/certs/ca1.pem, /certs/ca2.pem]
    minimumtls: tls1.3
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: 127.0.0.1:5002
    prometheus:
      enabled: true
      path: /metrics
auth:
  htpasswd:
    realm: basic-realm
    path: /auth/htpasswd
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      disabled: false
      url: https://my.listener.com/event
      headers:
        Authorization: [Bearer xyz]
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore:
        mediatypes: [application/vnd.oci.image.config.v1+json]
        actions: [pull]
    - name: off
      disabled: true
      url: http://off/
health:
  storagedriver:
    enabled: true
    interval: 5s
    threshold: 2
database:
  url: postgres://berth:pw@db:5432/berth
  poolsize: 8
metrics:
  enabled: true
"#;

#[test]
fn every_key() {
    let l = ok(FULL, &[]);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let s = l.settings;
    assert_eq!(s.addr, "127.0.0.1:5001");
    assert_eq!(s.prefix, "/registry");
    assert_eq!(s.host.as_deref(), Some("https://registry.example.com"));
    assert_eq!(s.drain_timeout, Duration::from_secs(60));
    let tls = s.tls.unwrap();
    assert_eq!(tls.certificate, PathBuf::from("/certs/domain.crt"));
    assert_eq!(tls.client_cas.len(), 2);
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(
        s.headers,
        vec![("X-Content-Type-Options".into(), "nosniff".into())]
    );
    let debug = s.debug.unwrap();
    assert_eq!(debug.addr, "127.0.0.1:5002");
    assert_eq!(debug.metrics_path.as_deref(), Some("/metrics"));
    assert!(s.metrics_on_main);
    assert_eq!(s.log.level, "debug");
    assert!(s.log.json && !s.log.access_log);
    assert_eq!(s.log.fields.len(), 2);
    assert_eq!(
        s.storage,
        StorageSettings::Filesystem {
            root: "/var/lib/registry".into()
        }
    );
    assert!(s.delete_enabled && !s.redirect);
    let purge = s.upload_purging.unwrap();
    assert_eq!(
        (purge.age, purge.interval, purge.dry_run),
        (
            Duration::from_secs(72 * 3600),
            Duration::from_secs(3600),
            true
        )
    );
    assert_eq!(
        s.database,
        DatabaseSettings::Postgres {
            url: "postgres://berth:pw@db:5432/berth".into(),
            pool_size: 8
        }
    );
    let h = s.auth.htpasswd.unwrap();
    assert_eq!(
        (h.realm.as_str(), h.path),
        ("basic-realm", PathBuf::from("/auth/htpasswd"))
    );
    assert_eq!(s.notifications.len(), 1, "disabled endpoints are dropped");
    let e = &s.notifications[0];
    assert_eq!(e.name, "alistener");
    assert_eq!(e.timeout, Duration::from_millis(500));
    assert_eq!((e.threshold, e.backoff), (5, Duration::from_secs(1)));
    assert_eq!(e.ignored_media_types.len(), 2);
    assert_eq!(e.ignored_actions, vec!["pull".to_string()]);
    assert_eq!(
        e.headers,
        vec![("Authorization".into(), "Bearer xyz".into())]
    );
    assert_eq!(
        (s.health.interval, s.health.threshold),
        (Duration::from_secs(5), 2)
    );
}

#[test]
fn s3_and_token_keys() {
    let l = ok(
        "storage:\n  s3:\n    accesskey: AK\n    secretkey: SK\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:8333\n    bucket: reg\n    rootdirectory: /registry/\n    forcepathstyle: true\n    secure: false\n    skipverify: true\n    v4auth: true\n    chunksize: 10485760\nauth:\n  token:\n    realm: https://auth.example.com/token\n    service: registry.example.com\n    issuer: auth-service\n    rootcertbundle: /certs/bundle.pem\n    autoredirect: false\n",
        &[],
    );
    let StorageSettings::S3(s3) = &l.settings.storage else {
        panic!()
    };
    assert_eq!(s3.bucket, "reg");
    assert_eq!(s3.root_directory, "/registry/");
    assert_eq!(s3.region_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert!(s3.force_path_style && !s3.secure && s3.skip_verify);
    assert_eq!(s3.chunk_size, 10 << 20);
    let t = l.settings.auth.token.unwrap();
    assert_eq!(t.issuer, "auth-service");
    assert_eq!(
        l.warnings.len(),
        1,
        "embedded metadata with S3 warns: {:?}",
        l.warnings
    );
    assert_eq!(l.warnings[0].key, "database.url");
}

/// `storage.s3.requesttimeout` (a Berth key inside registry:2's driver parameters, which
/// registry:2 ignores): 5 s by default, a Go duration, overridable from the environment.
#[test]
fn s3_request_timeout() {
    let s3 = |yaml: &str, vars: &[(&str, &str)]| match ok(yaml, vars).settings.storage {
        StorageSettings::S3(s3) => s3.request_timeout,
        other => panic!("{other:?}"),
    };
    let base = "storage:\n  s3:\n    region: r\n    bucket: b\n";
    assert_eq!(s3(base, &[]), Duration::from_secs(5));
    let two = format!("{base}    requesttimeout: 2500ms\n");
    assert_eq!(s3(&two, &[]), Duration::from_millis(2500));
    let var = [("REGISTRY_STORAGE_S3_REQUESTTIMEOUT", "10s")];
    assert_eq!(s3(&two, &var), Duration::from_secs(10));
    let loaded = ok(&two, &[]);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| !w.key.contains("requesttimeout")),
        "{:?}",
        loaded.warnings
    );
    let zero = format!("{base}    requesttimeout: 0s\n");
    assert_eq!(err_key(&zero, &[]), "storage.s3.requesttimeout");
}

/// `v4auth` means what the storage crate says: `false` cannot work on Amazon S3 (refused),
/// and an S3-compatible service is signed with V4 anyway (accepted, logged).
#[test]
fn s3_v4auth_false_is_refused_only_for_aws() {
    let l = ok(
        "storage:\n  s3:\n    regionendpoint: http://ceph:7480\n    bucket: reg\n    v4auth: false\n",
        &[],
    );
    let StorageSettings::S3(s3) = &l.settings.storage else {
        panic!()
    };
    assert!(!s3.v4auth);
    let aws = "storage:\n  s3:\n    region: eu-west-1\n    bucket: reg\n    v4auth: false\n";
    assert_eq!(err_key(aws, &[]), "storage.s3.v4auth");
}

#[test]
fn s3_region_defaults_for_compatible_endpoints() {
    let l = ok(
        "storage:\n  s3:\n    regionendpoint: http://minio:9000\n    bucket: reg\n",
        &[],
    );
    let StorageSettings::S3(s3) = &l.settings.storage else {
        panic!()
    };
    assert_eq!(s3.region.as_deref(), Some("us-east-1"));
}

#[test]
fn seed_compose_htpasswd_filesystem() {
    let l = ok(
        "",
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Docker Registry"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                "/var/lib/registry",
            ),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ],
    );
    let s = l.settings;
    assert_eq!(s.auth.htpasswd.clone().unwrap().realm, "Docker Registry");
    assert_eq!(
        s.storage,
        StorageSettings::Filesystem {
            root: "/var/lib/registry".into()
        }
    );
    assert!(s.delete_enabled);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn seed_compose_minio_s3() {
    let l = ok(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n",
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Docker Registry"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            ("REGISTRY_STORAGE", "s3"),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", "minioadmin"),
            ("REGISTRY_STORAGE_S3_SECRETKEY", "minioadmin123"),
            ("REGISTRY_STORAGE_S3_REGION", "us-east-1"),
            ("REGISTRY_STORAGE_S3_BUCKET", "docker-registry"),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "http://minio:9000"),
            ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_DATABASE_URL", "postgres://u:p@pg/berth"),
        ],
    );
    let StorageSettings::S3(s3) = &l.settings.storage else {
        panic!("{:?}", l.settings.storage)
    };
    assert_eq!(s3.access_key.as_deref(), Some("minioadmin"));
    assert_eq!(s3.secret_key.as_deref(), Some("minioadmin123"));
    assert_eq!(s3.region_endpoint.as_deref(), Some("http://minio:9000"));
    assert!(s3.force_path_style && l.settings.delete_enabled);
    assert!(matches!(
        l.settings.database,
        DatabaseSettings::Postgres { .. }
    ));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn seed_s3_config_file_and_mirror_warn_for_unimplemented_keys() {
    let l = ok(
        "version: 0.1\nstorage:\n  s3:\n    accesskey: AKIAIOSFODNN7EXAMPLE\n    secretkey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n    region: us-east-1\n    bucket: my-docker-registry\n    rootdirectory: /registry\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n  maintenance:\n    readonly:\n      enabled: true\nproxy:\n  remoteurl: https://registry-1.docker.io\n  username: u\n  password: p\ndatabase:\n  url: sqlite:///var/lib/berth/meta.sqlite\n",
        &[],
    );
    let keys: Vec<&str> = l.warnings.iter().map(|w| w.key.as_str()).collect();
    assert!(keys.contains(&"storage.cache"), "{keys:?}");
    assert!(keys.contains(&"storage.maintenance.readonly"), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("proxy")), "{keys:?}");
    assert!(
        l.warnings
            .iter()
            .all(|w| w.message.contains("not implemented")),
        "{:?}",
        l.warnings
    );
    assert_eq!(
        l.settings.database,
        DatabaseSettings::Sqlite {
            path: "/var/lib/berth/meta.sqlite".into()
        }
    );
}

#[test]
fn unknown_keys_warn_by_name_and_variable() {
    let l = ok(
        "http:\n  adr: :5000\nstorage:\n  filesystem:\n    rootdirectry: /x\nredis:\n  addr: localhost:6379\n",
        &[("REGISTRY_HTTP_TIMEOUT", "5s"), ("REGISTRY_NOTIFICATIONS_ENDPOINTS", "- name: a\n  url: http://x/\n  bogus: 1\n")],
    );
    let text: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("http.adr: unknown configuration key"), "{text:?}");
    assert!(has("storage.filesystem.rootdirectry: unknown"), "{text:?}");
    assert!(has("redis"), "{text:?}");
    assert!(has("http.timeout (from REGISTRY_HTTP_TIMEOUT)"), "{text:?}");
    assert!(has("bogus"), "{text:?}");
    assert_eq!(l.settings.notifications.len(), 1);
}

#[test]
fn env_overrides_file_values() {
    let l = ok(
        "http:\n  addr: :5000\nstorage:\n  delete:\n    enabled: false\n",
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:7000"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
            ("REGISTRY_HTTP_TLS_KEY", "/k.pem"),
            ("REGISTRY_HTTP_SECRET", "12345"),
            ("REGISTRY_LOG_LEVEL", "warn"),
            ("REGISTRY_DATABASE_POOLSIZE", "4"),
            ("REGISTRY_HTTP_DEBUG_ADDR", ":5001"),
        ],
    );
    let s = l.settings;
    assert_eq!(s.addr, "127.0.0.1:7000");
    assert!(s.delete_enabled);
    assert_eq!(s.tls.unwrap().key, PathBuf::from("/k.pem"));
    assert_eq!(s.log.level, "warn");
    assert_eq!(s.debug.unwrap().addr, ":5001");
    assert_eq!(l.file.http.secret.unwrap().as_str(), "12345");
}

#[test]
fn invalid_values_name_the_key() {
    assert_eq!(err_key("http:\n  addr: 5000\n", &[]), "http.addr");
    assert_eq!(
        err_key("storage:\n  delete:\n    enabled: maybe\n", &[]),
        "storage.delete.enabled"
    );
    assert_eq!(
        err_key("", &[("REGISTRY_STORAGE_DELETE_ENABLED", "perhaps")]),
        "storage.delete.enabled"
    );
    assert_eq!(err_key("log:\n  level: loud\n", &[]), "log.level");
    assert_eq!(err_key("log:\n  formatter: xml\n", &[]), "log.formatter");
    assert_eq!(err_key("version: 0.2\n", &[]), "version");
    assert_eq!(
        err_key("http:\n  tls:\n    certificate: /c\n", &[]),
        "http.tls.key"
    );
    assert_eq!(
        err_key(
            "http:\n  tls:\n    certificate: /c\n    key: /k\n    minimumtls: tls1.0\n",
            &[]
        ),
        "http.tls.minimumtls"
    );
    assert_eq!(
        err_key("http:\n  draintimeout: soon\n", &[]),
        "http.draintimeout"
    );
    assert_eq!(err_key("http:\n  prefix: registry\n", &[]), "http.prefix");
    assert_eq!(
        err_key("http:\n  headers:\n    \"bad header\": [x]\n", &[]),
        "http.headers.bad header"
    );
    assert_eq!(
        err_key("storage:\n  s3:\n    region: r\n", &[]),
        "storage.s3.bucket"
    );
    assert_eq!(
        err_key("storage:\n  s3:\n    bucket: b\n", &[]),
        "storage.s3.region"
    );
    assert_eq!(
        err_key(
            "storage:\n  s3:\n    region: r\n    bucket: b\n    chunksize: 1024\n",
            &[]
        ),
        "storage.s3.chunksize"
    );
    assert_eq!(
        err_key(
            "storage:\n  s3:\n    region: r\n    bucket: b\n    v4auth: false\n",
            &[]
        ),
        "storage.s3.v4auth"
    );
    assert_eq!(
        err_key(
            "storage:\n  filesystem: {}\n  s3:\n    region: r\n    bucket: b\n",
            &[]
        ),
        "storage"
    );
    assert_eq!(
        err_key("auth:\n  htpasswd:\n    realm: r\n", &[]),
        "auth.htpasswd.path"
    );
    assert_eq!(
        err_key("auth:\n  token:\n    realm: r\n", &[]),
        "auth.token.service"
    );
    assert_eq!(
        err_key("database:\n  url: mysql://x\n", &[]),
        "database.url"
    );
    assert_eq!(
        err_key("database:\n  poolsize: 0\n", &[]),
        "database.poolsize"
    );
    assert_eq!(
        err_key(
            "notifications:\n  endpoints:\n    - name: a\n      url: ftp://x\n",
            &[]
        ),
        "notifications.endpoints[0].url"
    );
    assert_eq!(err_key("notifications:\n  endpoints:\n    - url: http://x\n      ignore:\n        actions: [fly]\n", &[]), "notifications.endpoints[0].ignore.actions");
    assert_eq!(
        err_key("health:\n  storagedriver:\n    interval: 0s\n", &[]),
        "health.storagedriver.interval"
    );
    assert_eq!(err_key("http: [1, 2]\n", &[]), "http");
    assert_eq!(err_key("http:\n  net: unix\n", &[]), "http.net");
}

#[test]
fn syntax_errors_and_bad_files() {
    assert!(matches!(
        from_text("http: [\n", env(&[])),
        Err(ConfigError::Syntax { .. })
    ));
    assert!(matches!(
        from_text("- a\n- b\n", env(&[])),
        Err(ConfigError::Syntax { .. })
    ));
    let missing = load(
        Some(std::path::Path::new("/nonexistent/berth.yml")),
        env(&[]),
    );
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
}

#[test]
fn s3_multipart_copy_keys_warn_that_copies_follow_chunksize() {
    let l = ok(
        "storage:\n  s3:\n    bucket: b\n    region: us-east-1\n    multipartcopychunksize: 33554432\n    multipartcopymaxconcurrency: 100\n    multipartcopythresholdsize: 33554432\ndatabase:\n  url: sqlite:///tmp/m.sqlite\n",
        &[],
    );
    let text: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    for key in ["chunksize", "maxconcurrency", "thresholdsize"] {
        let w = text
            .iter()
            .find(|t| t.starts_with(&format!("storage.s3.multipartcopy{key}:")))
            .unwrap_or_else(|| panic!("no warning for {key}: {text:?}"));
        assert!(w.contains("not implemented by Berth"), "{w}");
        assert!(!w.contains("not used"), "copies are used: {w}");
    }
    let all = text.join("\n");
    assert!(
        all.contains("UploadPartCopy") && all.contains("8 at a time"),
        "{all}"
    );
}

/// Every key path of the published schema, sections included: `storage.s3.chunksize`,
/// `notifications.endpoints[].url`.
fn schema_paths(
    node: &serde_json::Value,
    defs: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    let mut node = node;
    while let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        node = &defs[r.rsplit('/').next().unwrap_or_default()];
    }
    for alt in ["anyOf", "oneOf", "allOf"] {
        for a in node
            .get(alt)
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            schema_paths(a, defs, prefix, out);
        }
    }
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            let path = format!("{prefix}{k}");
            out.push(path.clone());
            schema_paths(v, defs, &format!("{path}."), out);
        }
    }
    if let Some(items) = node.get("items") {
        let list = format!("{}[].", prefix.trim_end_matches('.'));
        schema_paths(items, defs, &list, out);
    }
}

fn workspace_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// docs/configuration.md names every key of docs/config.schema.json and every registry:2 key
/// that only warns, so the reference cannot silently fall behind the code.
#[test]
fn configuration_doc_names_every_key() {
    let doc = workspace_file("docs/configuration.md");
    let schema: serde_json::Value =
        serde_json::from_str(&workspace_file("docs/config.schema.json")).unwrap();
    let mut paths = Vec::new();
    schema_paths(&schema, &schema["$defs"], "", &mut paths);
    assert!(paths.len() > 100, "schema walk found only {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
    let unlisted: Vec<&str> = super::warnings::UNIMPLEMENTED
        .iter()
        .filter(|(k, why)| !doc.contains(&format!("`{k}`")) || !doc.contains(why))
        .map(|(k, _)| *k)
        .collect();
    assert!(
        unlisted.is_empty(),
        "docs/configuration.md lacks {unlisted:?}"
    );
}
