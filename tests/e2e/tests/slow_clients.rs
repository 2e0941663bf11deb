//! Slow and greedy clients against the real `berth` binary (`http.limits`): request bodies that
//! trickle a byte per second (authenticated blob PATCHes, anonymous `POST /auth/token`) are cut
//! off with 408 and their connections closed; connections past the per-client cap are closed
//! right after accept while other addresses are still served; trusted proxies are capped only by
//! the total; the server's descriptors stay bounded throughout.
//!
//! Every socket is on loopback: on Linux all of 127/8 is local, so binding a client socket to
//! 127.0.0.2 before connecting makes it a different client address. These tests always run
//! Berth (the limits are Berth's own keys). No timing is asserted beyond correctness deadlines.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_e2e::http::{basic_auth, read_response, Response};
use berth_e2e::prom;
use berth_e2e::server::berth_bin;
use berth_e2e::{random_bytes, sha256_digest, Cmd, Server, ServerOptions, TestDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// `http.limits.bodytimeout` of the flood test (the default `bodyminrate`, 1024 bytes/s, stays).
const PERIOD: Duration = Duration::from_secs(4);
/// `http.limits.connectionsperclient` of the flood test; the flood fills it exactly.
const PER_CLIENT: usize = 200;
const SLOW_PATCHES: usize = 150;
const SLOW_TOKENS: usize = PER_CLIENT - SLOW_PATCHES;
/// Connections tried from the flooding address once it is at its cap.
const OVER_CAP: usize = 50;
/// Hang guard for any one socket of the test.
const GIVE_UP: Duration = Duration::from_secs(60);
const PASSWORD: &str = "root-Pa55";

/// Berth with htpasswd users and its own token endpoint, plus `yaml` merged into its config.
fn start(t: &TestDir, yaml: &str) -> Server {
    let htpasswd = t.join("htpasswd");
    Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(["user", "add", "--file"])
        .arg(&htpasswd)
        .args(["root", "--password", PASSWORD])
        .stdout();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n  issuer:\n    service: berth-e2e\n",
        htpasswd.display()
    );
    let opts = ServerOptions::default()
        .config(&auth)
        .extra_yaml(yaml)
        .admin("root", PASSWORD);
    Server::start_with(opts)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// `POST /v2/flood/blobs/uploads/` from 127.0.0.1; the upload's path.
fn start_upload(s: &Server, auth: &str) -> String {
    let r = berth_e2e::http::request(
        "POST",
        &format!("{}/v2/flood/blobs/uploads/", s.url()),
        &[("Authorization", auth)],
        &[],
    )
    .expect("POST upload");
    assert_eq!(r.status, 202, "{}", r.describe());
    let loc = r.header("location").expect("Location");
    loc.strip_prefix(&s.url()).unwrap_or(loc).to_string()
}

/// What became of one trickling request.
struct Outcome {
    what: String,
    /// From the server's `100 Continue` (the handler started reading) to EOF or reset.
    closed_after: Option<Duration>,
    /// Whatever the server sent after the `100 Continue`.
    response: Vec<u8>,
}

/// Sends `head` (with `Expect: 100-continue`), reports on `ready` once the server asks for the
/// body, then sends one body byte per second until the server closes the connection.
async fn trickle(addr: SocketAddr, what: String, head: String, ready: mpsc::Sender<()>) -> Outcome {
    let mut out = Outcome {
        what,
        closed_after: None,
        response: Vec::new(),
    };
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("send head");
    match read_continue(&mut s).await {
        Ok(rest) => out.response = rest,
        Err(got) => {
            eprintln!("{}: no 100 Continue; the server sent {got:?}", out.what);
            return out;
        }
    }
    let _ = ready.send(()).await;
    let asked = Instant::now();
    let (mut rd, mut wr) = s.split();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut writing = true;
    while asked.elapsed() < GIVE_UP {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    out.closed_after = Some(asked.elapsed());
                    return out;
                }
                Ok(n) => out.response.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if writing => writing = wr.write_all(b"a").await.is_ok(),
            () = tokio::time::sleep(Duration::from_secs(1)), if !writing => {}
        }
    }
    out
}

/// Reads the interim `100 Continue` and returns the bytes after it; anything else (a final
/// answer, a close) is returned as the error, as text.
async fn read_continue(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.starts_with(b"HTTP/1.1 100") {
                return Ok(got[end + 4..].to_vec());
            }
            return Err(String::from_utf8_lossy(&got).into_owned());
        }
        match tokio::time::timeout(GIVE_UP, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return Err(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

fn patch_head(port: u16, upload: &str, auth: &str) -> String {
    format!(
        "PATCH {upload} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\
         Expect: 100-continue\r\n\r\n"
    )
}

fn token_head(port: u16) -> String {
    format!(
        "POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\
         Expect: 100-continue\r\n\r\n"
    )
}

/// A client socket from `local` (any 127/8 address) to `addr`.
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{local}:0").parse().expect("address"))
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    sock.connect(addr).await.expect("connect")
}

/// One request on a fresh `Connection: close` connection from `local`.
async fn request_from(
    local: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &[u8],
) -> Response {
    let mut s = connect_from(local, addr).await;
    let auth = match auth {
        "" => String::new(),
        a => format!("Authorization: {a}\r\n"),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("send head");
    s.write_all(body).await.expect("send body");
    let mut raw = Vec::new();
    tokio::time::timeout(GIVE_UP, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    read_response(&raw[..], method == "HEAD").expect("an HTTP response")
}

/// Whether the server closes a fresh connection from `local` without answering its request.
async fn closed_at_once(local: &str, addr: SocketAddr) -> bool {
    let mut s = connect_from(local, addr).await;
    let _ = s
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: berth\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Opens a keep-alive connection from `local` and proves it is served (`GET /v2/` answers).
async fn served_connection(local: &str, addr: SocketAddr) -> Option<TcpStream> {
    let mut s = connect_from(local, addr).await;
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: berth\r\n\r\n")
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    got.starts_with(b"HTTP/1.1 ").then_some(s)
}

/// Checks the 408 a cut-off request got, if it got one; returns whether it did.
fn check_answer(o: &Outcome) -> bool {
    if o.response.is_empty() {
        return false;
    }
    let r = read_response(&o.response[..], false)
        .unwrap_or_else(|e| panic!("{}: not an HTTP response ({e})", o.what));
    assert_eq!(r.status, 408, "{}:\n{}", o.what, r.describe());
    let json = r.json();
    assert_eq!(json["errors"][0]["code"], "REQUEST_TIMEOUT", "{}", o.what);
    let message = json["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("http.limits.bodyminrate"), "{message}");
    true
}

/// Pushes and pulls a 1 MiB blob from 127.0.0.2.
async fn push_and_pull_from_another_address(addr: SocketAddr, auth: &str) {
    let blob = random_bytes(1 << 20);
    let digest = sha256_digest(&blob);
    let path = format!("/v2/clean/blobs/uploads/?digest={digest}");
    let r = request_from("127.0.0.2", addr, "POST", &path, auth, &blob).await;
    assert_eq!(r.status, 201, "push from 127.0.0.2:\n{}", r.describe());
    let path = format!("/v2/clean/blobs/{digest}");
    let r = request_from("127.0.0.2", addr, "GET", &path, auth, &[]).await;
    assert_eq!(r.status, 200, "pull from 127.0.0.2:\n{}", r.describe());
    assert!(r.body == blob, "pulled bytes differ from pushed bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_are_cut_and_the_per_client_cap_holds() {
    let t = TestDir::new("slow-clients");
    let s = start(
        &t,
        &format!(
            "http:\n  limits:\n    bodytimeout: {}s\n    connectionsperclient: {PER_CLIENT}\n",
            PERIOD.as_secs()
        ),
    );
    let pid = s.pid().expect("berth is running");
    let addr: SocketAddr = s.addr().parse().expect("address");
    let auth = basic_auth("root", PASSWORD);
    let uploads: Vec<String> = (0..SLOW_PATCHES).map(|_| start_upload(&s, &auth)).collect();
    let baseline = open_fds(pid);

    let (ready_tx, mut ready) = mpsc::channel(PER_CLIENT);
    let mut flood = JoinSet::new();
    for (i, upload) in uploads.iter().enumerate() {
        let head = patch_head(s.port(), upload, &auth);
        flood.spawn(trickle(addr, format!("PATCH #{i}"), head, ready_tx.clone()));
    }
    for i in 0..SLOW_TOKENS {
        let head = token_head(s.port());
        flood.spawn(trickle(
            addr,
            format!("POST /auth/token #{i}"),
            head,
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    let flood_started = Instant::now();
    for n in 0..PER_CLIENT {
        let got = tokio::time::timeout(GIVE_UP, ready.recv()).await;
        assert!(
            matches!(got, Ok(Some(()))),
            "only {n} of {PER_CLIENT} slow requests were read by the server"
        );
    }
    let all_reading = flood_started.elapsed();

    // (c) The flooding address is at its cap: more connections from it are closed at once.
    for i in 0..OVER_CAP {
        assert!(
            closed_at_once("127.0.0.1", addr).await,
            "connection {i} past the cap of {PER_CLIENT} was served (the flood's requests were \
             all being read after {all_reading:?}, this is {:?} in)",
            flood_started.elapsed()
        );
    }
    // (d) Descriptors: the flood's sockets and upload files, nothing for the refused ones.
    let during = open_fds(pid);
    assert!(
        during <= baseline + 2 * PER_CLIENT + 64,
        "{during} descriptors open during the flood (baseline {baseline})"
    );
    // (b) Another address pushes and pulls meanwhile.
    push_and_pull_from_another_address(addr, &auth).await;
    // No slow request can have been cut yet: each waited less than one period so far.
    assert!(
        flood_started.elapsed() < PERIOD,
        "setup took {:?}, longer than the body timeout: the flood may have ended before \
         127.0.0.2 was served",
        flood_started.elapsed()
    );

    // (a) Every slow request is cut off within a few periods; those answered got 408.
    let mut answered = 0;
    while let Some(o) = flood.join_next().await {
        let o = o.expect("trickle task");
        let closed = o
            .closed_after
            .unwrap_or_else(|| panic!("{} still open after {GIVE_UP:?}", o.what));
        assert!(
            closed <= 3 * PERIOD,
            "{} closed only after {closed:?}",
            o.what
        );
        answered += usize::from(check_answer(&o));
    }
    assert!(answered > 0, "no slow request got its 408");
    eprintln!("{answered} of {PER_CLIENT} slow requests read their 408 before the close");

    // The flood's descriptors are released.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > baseline + 16 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = open_fds(pid);
    assert!(
        after <= baseline + 16,
        "{after} descriptors open after the flood (baseline {baseline})"
    );
    assert!(
        !closed_at_once("127.0.0.1", addr).await,
        "127.0.0.1 is refused although its connections are closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_are_capped_only_by_the_total() {
    let t = TestDir::new("conn-caps");
    let s = start(
        &t,
        "http:\n  trustedproxies: [127.0.0.3]\n  limits:\n    connectionsperclient: 2\n    \
         maxconnections: 6\nmetrics:\n  enabled: true\n",
    );
    let addr: SocketAddr = s.addr().parse().expect("address");
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            served_connection("127.0.0.1", addr)
                .await
                .expect("within the cap"),
        );
    }
    assert!(
        closed_at_once("127.0.0.1", addr).await,
        "a third connection from 127.0.0.1"
    );
    for i in 0..4 {
        let c = served_connection("127.0.0.3", addr).await;
        held.push(c.unwrap_or_else(|| panic!("trusted proxy connection {i} was refused")));
    }
    assert!(
        closed_at_once("127.0.0.3", addr).await,
        "a seventh connection in all"
    );
    assert!(
        closed_at_once("127.0.0.2", addr).await,
        "any client past the total"
    );
    held.truncate(5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = None;
    while again.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        again = served_connection("127.0.0.2", addr).await;
    }
    assert!(
        again.is_some(),
        "a place freed by a closed connection is not reused"
    );

    // Refusals are counted by reason.
    drop((held, again));
    let mut room = None;
    while room.is_none() && Instant::now() < deadline + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        room = served_connection("127.0.0.2", addr).await;
    }
    drop(room);
    let r = request_from("127.0.0.2", addr, "GET", "/metrics", "", &[]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let m = prom::parse(&String::from_utf8_lossy(&r.body)).expect("exposition");
    let refused = |reason| {
        let labels = [("listener", "http"), ("reason", reason)];
        m.sum("berth_connections_refused_total", &labels)
    };
    assert!(refused("per_client") >= 1.0, "per_client refusals counted");
    assert!(refused("total") >= 2.0, "total refusals counted");
}
