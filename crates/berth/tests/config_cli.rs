//! The configuration as an operator meets it, through the real binary: `berth config check` on
//! registry:2 files (secrets masked, warnings naming ignored keys, errors naming the key path),
//! the docker-compose environment blocks of registry:2 deployments, `berth config schema`, and
//! `berth serve` starting despite an unknown key while logging a warning that names it.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_yaml::Value;

/// `berth <args>` with only the given `REGISTRY_*` variables (the caller's are removed).
fn berth(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.args(args).env("NO_COLOR", "1").env_remove("BERTH_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    c.envs(vars.iter().copied());
    c
}

fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    berth(args, vars).output().expect("run berth")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `berth config check FILE` that must succeed; returns stdout and the YAML parsed.
fn check_ok(file: Option<&Path>, vars: &[(&str, &str)]) -> (String, Value) {
    let mut args = vec!["config", "check"];
    let f;
    if let Some(p) = file {
        f = p.to_str().expect("utf-8 path").to_string();
        args.push(&f);
    }
    let o = run(&args, vars);
    let (out, err) = text(&o);
    assert!(o.status.success(), "config check failed:\n{out}\n{err}");
    let v: Value = serde_yaml::from_str(&out).unwrap_or_else(|e| panic!("not YAML ({e}):\n{out}"));
    (out, v)
}

/// `berth config check` that must fail; returns stderr.
fn check_err(yaml: &str, vars: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yml");
    std::fs::write(&p, yaml).unwrap();
    let o = run(&["config", "check", p.to_str().unwrap()], vars);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "expected failure for:\n{yaml}\nstdout:\n{out}"
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

const REGISTRY2_FILE: &str = r#"version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  s3:
    accesskey: AKIAIOSFODNN7EXAMPLE
    secretkey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    region: us-east-1
    bucket: my-docker-registry
    rootdirectory: /registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
  adr: typo
redis:
  addr: localhost:6379
notifications:
  endpoints:
    - name: listener
      url: https://hooks.example.com/event
      headers:
        Authorization: [Bearer hook-credential-123]
      timeout: 500ms
      threshold: 5
      backoff: 1s
database:
  url: postgres://berth:db-password-456@db:5432/berth
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"#;

#[test]
fn check_masks_secrets_and_names_ignored_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yml");
    std::fs::write(&p, REGISTRY2_FILE).unwrap();
    let (out, v) = check_ok(Some(&p), &[]);
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI",
        "asecretforlocaldevelopment",
        "hook-credential-123",
        "db-password-456",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    let masked = Value::from("********");
    assert_eq!(v["storage"]["s3"]["secretkey"], masked, "{out}");
    assert_eq!(v["storage"]["s3"]["accesskey"], masked, "{out}");
    assert_eq!(v["http"]["secret"], masked, "{out}");
    assert_eq!(
        v["notifications"]["endpoints"][0]["headers"]["Authorization"][0], masked,
        "{out}"
    );
    assert_eq!(
        v["database"]["url"],
        Value::from("postgres://berth:********@db:5432/berth"),
        "{out}"
    );
    // What is not secret is shown as understood.
    assert_eq!(
        v["storage"]["s3"]["bucket"],
        Value::from("my-docker-registry")
    );
    assert_eq!(v["storage"]["delete"]["enabled"], Value::from(true));
    assert_eq!(
        v["notifications"]["endpoints"][0]["url"],
        Value::from("https://hooks.example.com/event")
    );
    assert!(
        out.contains("# storage: s3 bucket my-docker-registry (us-east-1)"),
        "{out}"
    );
    assert!(
        out.contains("# metadata: PostgreSQL postgres://berth:********@db:5432/berth"),
        "{out}"
    );
    assert!(out.contains("# listen: 0.0.0.0:5000"), "{out}");
    // One warning per ignored key, naming it; ignored keys are not echoed as configuration.
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("# warning: "))
        .collect();
    let has = |k: &str, why: &str| warnings.iter().any(|w| w.contains(k) && w.contains(why));
    assert!(
        has("http.adr", "unknown configuration key"),
        "{warnings:#?}"
    );
    assert!(has("redis", "not implemented"), "{warnings:#?}");
    assert!(has("storage.cache", "not implemented"), "{warnings:#?}");
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        v["http"].get("adr").is_none() && v.get("redis").is_none(),
        "{out}"
    );
}

/// A config file, environment variables, and the key path the error must name.
type BadCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn invalid_values_fail_naming_the_key_path() {
    let cases: &[BadCase] = &[
        ("storage:\n  delete:\n    enabled: maybe\n", &[], "storage.delete.enabled"),
        ("http:\n  addr: 5000\n", &[], "http.addr"),
        ("", &[("REGISTRY_LOG_LEVEL", "loud")], "log.level"),
        ("", &[("REGISTRY_HTTP_DEBUG_ADDR", "nowhere")], "http.debug.addr"),
        (
            "notifications:\n  endpoints:\n    - name: a\n      url: ftp://x/\n",
            &[],
            "notifications.endpoints[0].url",
        ),
        (
            "notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      backoff: soon\n",
            &[],
            "notifications.endpoints[0].backoff",
        ),
        (
            "health:\n  storagedriver:\n    threshold: -1\n",
            &[],
            "health.storagedriver.threshold",
        ),
        ("storage:\n  s3:\n    region: us-east-1\n", &[], "storage.s3.bucket"),
        ("version: 0.2\n", &[], "version"),
    ];
    for (yaml, vars, key) in cases {
        let err = check_err(yaml, vars);
        assert!(
            err.contains(&format!("invalid config value for {key}:")),
            "{yaml:?} {vars:?}: stderr does not name {key}:\n{err}"
        );
    }
    // Malformed YAML names the file and the position.
    let err = check_err("http:\n  addr: [\n", &[]);
    assert!(err.contains("config.yml") && err.contains("line"), "{err}");
}

/// The environment block of the seeds' htpasswd + filesystem docker-compose service.
const COMPOSE_FILESYSTEM: &[(&str, &str)] = &[
    ("REGISTRY_AUTH", "htpasswd"),
    ("REGISTRY_AUTH_HTPASSWD_REALM", "Docker Registry"),
    ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
    (
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        "/var/lib/registry",
    ),
    ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
];

/// The environment block of the seeds' MinIO docker-compose service.
const COMPOSE_MINIO: &[(&str, &str)] = &[
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
];

/// The registry:2 image's own /etc/docker/registry/config.yml, which compose files run with.
const IMAGE_DEFAULT_CONFIG: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

#[test]
fn compose_environment_blocks_give_the_expected_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yml");
    std::fs::write(&p, IMAGE_DEFAULT_CONFIG).unwrap();

    let (out, v) = check_ok(Some(&p), COMPOSE_FILESYSTEM);
    assert_eq!(
        v["auth"]["htpasswd"]["realm"],
        Value::from("Docker Registry"),
        "{out}"
    );
    assert_eq!(
        v["auth"]["htpasswd"]["path"],
        Value::from("/auth/htpasswd"),
        "{out}"
    );
    assert_eq!(
        v["storage"]["filesystem"]["rootdirectory"],
        Value::from("/var/lib/registry"),
        "{out}"
    );
    assert_eq!(
        v["storage"]["delete"]["enabled"],
        Value::from(true),
        "{out}"
    );
    assert_eq!(v["http"]["addr"], Value::from(":5000"), "{out}");
    assert_eq!(
        v["log"]["fields"]["service"],
        Value::from("registry"),
        "{out}"
    );
    assert!(
        out.contains("# storage: filesystem at /var/lib/registry\n"),
        "{out}"
    );
    assert!(
        out.contains("# metadata: embedded SQLite at /var/lib/registry/berth-meta.sqlite\n"),
        "{out}"
    );
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("# warning")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("storage.cache"), "{warnings:?}");

    let (out, v) = check_ok(Some(&p), COMPOSE_MINIO);
    let s3 = &v["storage"]["s3"];
    assert!(
        v["storage"].get("filesystem").is_none(),
        "REGISTRY_STORAGE=s3 drops filesystem: {out}"
    );
    assert_eq!(s3["bucket"], Value::from("docker-registry"), "{out}");
    assert_eq!(s3["region"], Value::from("us-east-1"), "{out}");
    assert_eq!(
        s3["regionendpoint"],
        Value::from("http://minio:9000"),
        "{out}"
    );
    assert_eq!(s3["forcepathstyle"], Value::from(true), "{out}");
    assert_eq!(s3["secretkey"], Value::from("********"), "{out}");
    assert!(!out.contains("minioadmin123"), "{out}");
    assert!(
        out.contains("# storage: s3 bucket docker-registry (us-east-1)"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("# warning: database.url")),
        "embedded metadata with S3 warns: {out}"
    );

    // Without any file: the environment alone, as in the first compose example.
    let (out, v) = check_ok(None, COMPOSE_FILESYSTEM);
    assert_eq!(
        v["auth"]["htpasswd"]["path"],
        Value::from("/auth/htpasswd"),
        "{out}"
    );
    assert!(!out.contains("# warning"), "{out}");
}

#[test]
fn schema_is_json_schema_of_the_file() {
    let o = run(&["config", "schema"], &[]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        v["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org")),
        "{v}"
    );
    let top: Vec<&str> = v["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "version",
        "log",
        "storage",
        "http",
        "auth",
        "notifications",
        "health",
        "database",
        "metrics",
    ] {
        assert!(top.contains(&k), "{k} missing from {top:?}");
    }
    let published = include_str!("../../../docs/config.schema.json");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        published,
        "docs/config.schema.json is stale"
    );
}

#[test]
fn serve_warns_about_an_unknown_key_and_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n  timeout: 5s\nstorage:\n  filesystem:\n    rootdirectory: {}\nproxy:\n  remoteurl: https://registry-1.docker.io\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = berth(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("REGISTRY_LOG_FORMATTER", "json")],
    )
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline && !up {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "berth exited with {st}: {}",
                std::fs::read_to_string(dir.path().join("log")).unwrap()
            );
        }
        up = get_status(port) == Some(200);
        if !up {
            thread::sleep(Duration::from_millis(25));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(up, "berth never answered GET /v2/:\n{logged}");
    let warnings: Vec<serde_json::Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["level"] == "warn")
        .collect();
    let named = |key: &str| {
        warnings
            .iter()
            .find(|w| w["key"] == key)
            .unwrap_or_else(|| panic!("no warning with key {key}:\n{logged}"))
            .clone()
    };
    assert!(named("http.timeout")["msg"]
        .as_str()
        .unwrap()
        .contains("unknown configuration key"));
    assert!(named("proxy")["msg"]
        .as_str()
        .unwrap()
        .contains("not implemented"));
}

/// `GET /v2/` status, or `None` while nothing listens.
fn get_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}
