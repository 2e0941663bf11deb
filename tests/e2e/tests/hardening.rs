//! Small security findings checked against the real `berth` binary: every 416 on a blob GET names
//! the blob size, `berth user add` refuses passwords bcrypt would cut, and error messages repeat
//! hostile client input escaped and bounded.
//!
//! These tests always run Berth (they check Berth's own answers and CLI).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::path::Path;

use berth_e2e::http::Response;
use berth_e2e::raw::RawApi;
use berth_e2e::server::berth_bin;
use berth_e2e::{Cmd, Output, Server, ServerOptions, TestDir};

const SIZE: usize = 1000;

fn blob_server() -> (Server, RawApi, String, Vec<u8>) {
    let s = Server::start_with(ServerOptions::default().pin_berth());
    let api = RawApi::new(s.url());
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let (digest, _) = api.push_blob_monolithic("ranges/app", &data);
    (s, api, format!("/v2/ranges/app/blobs/{digest}"), data)
}

fn get_range(api: &RawApi, path: &str, range: &str) -> Response {
    api.call("GET", path, &[("Range", range)], &[])
}

#[track_caller]
fn assert_416(r: &Response, range: &str) {
    assert_eq!(r.status, 416, "{range}:\n{}", r.describe());
    let want = format!("bytes */{SIZE}");
    assert_eq!(r.header("content-range"), Some(want.as_str()), "{range}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{range}"
    );
    assert_eq!(r.json()["errors"][0]["code"], "RANGE_INVALID", "{range}");
}

#[test]
fn every_416_on_a_blob_get_names_the_size() {
    let (_s, api, path, data) = blob_server();
    for range in [
        "bytes=0-1,3-4",
        "bytes=abc",
        "bytes=1000-",
        "bytes=99999999999999999999999-",
    ] {
        assert_416(&get_range(&api, &path, range), range);
    }
    let r = get_range(&api, &path, "bytes=0-99999999999999999999999");
    assert_eq!(r.status, 206, "{}", r.describe());
    assert_eq!(r.header("content-range"), Some("bytes 0-999/1000"));
    assert_eq!(r.body, data);
    let r = get_range(&api, &path, "bytes=-10");
    assert_eq!(r.status, 206, "{}", r.describe());
    assert_eq!(r.body, data[SIZE - 10..]);
}

#[test]
fn error_messages_quote_hostile_input() {
    let (_s, api, _, _) = blob_server();
    let tail = "z".repeat(5_000);
    let r = api.call(
        "GET",
        &format!("/v2/ranges/app/blobs/sha256:%0A%1B{tail}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.len() < 300, "{message}");
    assert!(message.contains("\\u{a}\\u{1b}zzz"), "{message:?}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

fn user_add(file: &Path, name: &str, password: Option<&str>, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(["user", "add", "--file"])
        .arg(file)
        .arg(name);
    if let Some(p) = password {
        cmd = cmd.args(["--password", p]);
    }
    if let Some(input) = stdin {
        cmd = cmd.stdin(input.to_vec());
    }
    cmd.arg("--cost").arg("4").output()
}

#[track_caller]
fn assert_refused(o: &Output, want: &str) {
    assert!(!o.success(), "accepted:\n{}", o.describe());
    assert!(o.stderr.contains(want), "message:\n{}", o.describe());
}

#[test]
fn user_add_refuses_passwords_bcrypt_would_cut() {
    let t = TestDir::new("hardening-users");
    let file = t.join("htpasswd");
    let ok = user_add(&file, "alice", Some(&"a".repeat(72)), None);
    assert!(ok.success(), "{}", ok.describe());
    let before = fs::read(&file).expect("htpasswd written");

    let long = "b".repeat(80);
    let o = user_add(&file, "bob", Some(&long), None);
    assert_refused(
        &o,
        "passwords are limited to 72 bytes (bcrypt); this one has 80",
    );
    let o = user_add(&file, "bob", None, Some(format!("{long}\n").as_bytes()));
    assert_refused(
        &o,
        "passwords are limited to 72 bytes (bcrypt); this one has 80",
    );
    // bytes, not characters: 37 two-byte characters are 74 bytes
    let o = user_add(&file, "alice", Some(&"é".repeat(37)), None);
    assert_refused(&o, "this one has 74");
    let o = user_add(&file, "bob", None, Some(b"\n"));
    assert_refused(&o, "the password is empty");
    assert_eq!(fs::read(&file).expect("htpasswd"), before, "file unchanged");

    let o = user_add(
        &file,
        "carol",
        None,
        Some(format!("{}\n", "c".repeat(72)).as_bytes()),
    );
    assert!(o.success(), "{}", o.describe());
    let listed = Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(["user", "list", "--file"])
        .arg(&file)
        .stdout();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["alice", "carol"]);
}

/// The image's user (uid 65532) on a data volume created by root: `berth serve` stops at once
/// with a message naming the problem, the path, the uid and the `chown` to run, for the
/// filesystem storage root and for the SQLite database's directory.
#[test]
fn a_data_directory_it_cannot_write_is_explained() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new("datadir-perms");
    let volume = t.join("volume");
    fs::create_dir_all(&volume).unwrap();
    // root-owned, world-readable, not writable by others: what `docker volume create` leaves
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&volume, fs::Permissions::from_mode(0o755)).unwrap();
    let writable = t.join("writable");
    fs::create_dir_all(&writable).unwrap();
    std::os::unix::fs::chown(&writable, Some(65532), Some(65532)).unwrap();
    let run = |storage: &Path, db: &Path| {
        Cmd::new("setpriv")
            .args(["--reuid=65532", "--regid=65532", "--clear-groups"])
            .arg(berth_bin())
            .arg("serve")
            .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", storage)
            .env(
                "REGISTRY_DATABASE_URL",
                format!("sqlite://{}", db.display()),
            )
            .run_fail()
    };
    for (storage, db, bad) in [
        (
            volume.join("data"),
            writable.join("meta.sqlite"),
            volume.clone(),
        ),
        (
            writable.join("data"),
            volume.join("db/meta.sqlite"),
            volume.clone(),
        ),
    ] {
        let out = run(&storage, &db);
        let err = &out.stderr;
        assert!(err.contains("permission denied"), "{}", out.describe());
        assert!(
            err.contains(&bad.display().to_string()),
            "{}",
            out.describe()
        );
        assert!(err.contains("uid 65532"), "{}", out.describe());
        assert!(
            err.contains(&format!("chown -R 65532:65532 {}", bad.display())),
            "{}",
            out.describe()
        );
        assert!(
            !err.to_lowercase().contains("sqlite"),
            "no database error: {}",
            out.describe()
        );
    }
}
