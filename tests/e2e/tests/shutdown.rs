//! Graceful shutdown (`http.draintimeout`): on SIGTERM the registry stops accepting, lets a blob
//! upload that is already streaming finish (over HTTP and HTTPS), closes idle keep-alive
//! connections and exits 0; an upload that outlives the drain timeout is cut off, the exit is
//! still clean, and nothing of the cut upload becomes visible.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::http::{self, read_response, Response};
use berth_e2e::tls::{KeyKind, Pki, TlsConn};
use berth_e2e::{random_bytes, sha256_digest, Server, ServerOptions, Target, TestDir};

/// The limit for the process to exit after SIGTERM: only a hang guard.
const EXIT_LIMIT: Duration = Duration::from_secs(120);

/// One request on a fresh connection (HTTPS when the server speaks it).
fn request(s: &Server, method: &str, path: &str) -> Response {
    match s.client_tls() {
        Some(tls) => TlsConn::connect(&s.addr(), tls)
            .and_then(|mut c| c.request(method, path, b""))
            .unwrap(),
        None => http::request(method, &format!("{}{path}", s.url()), &[], &[]).unwrap(),
    }
}

/// `POST /v2/<repo>/blobs/uploads/`; returns the upload URL's path and query.
fn start_upload(s: &Server, repo: &str) -> String {
    let r = request(s, "POST", &format!("/v2/{repo}/blobs/uploads/"));
    assert_eq!(r.status, 202, "{}", r.describe());
    let loc = r.header("location").expect("Location").to_string();
    match loc.strip_prefix(&s.url()) {
        Some(path) => path.to_string(),
        None => loc,
    }
}

/// A byte stream in both directions (plain TCP or TLS).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A monolithic `PUT <upload>?digest=` whose body is sent in two parts.
struct SlowPut {
    stream: BufReader<Box<dyn ReadWrite>>,
    rest: Vec<u8>,
}

impl SlowPut {
    /// Sends the head with `Expect: 100-continue` and waits for the `100 Continue`, which the
    /// server sends once a handler reads the body: from then on the request is in flight on the
    /// server, whatever the scheduling. Then sends the first `first` bytes of `body`.
    fn begin(s: &Server, upload: &str, body: &[u8], first: usize) -> SlowPut {
        let raw: Box<dyn ReadWrite> = match s.client_tls() {
            Some(tls) => Box::new(TlsConn::connect(&s.addr(), tls).unwrap().into_inner()),
            None => {
                let tcp = TcpStream::connect(s.addr()).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                Box::new(tcp)
            }
        };
        let mut stream = BufReader::new(raw);
        let sep = if upload.contains('?') { '&' } else { '?' };
        let head = format!(
            "PUT {upload}{sep}digest={} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            sha256_digest(body),
            s.addr(),
            body.len()
        );
        stream.get_mut().write_all(head.as_bytes()).unwrap();
        stream.get_mut().flush().unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {line:?}"
        );
        while !line.trim().is_empty() {
            line.clear();
            stream.read_line(&mut line).unwrap();
        }
        stream.get_mut().write_all(&body[..first]).unwrap();
        stream.get_mut().flush().unwrap();
        SlowPut {
            stream,
            rest: body[first..].to_vec(),
        }
    }

    /// Sends the rest and reads the response.
    fn finish(mut self) -> std::io::Result<Response> {
        self.stream.get_mut().write_all(&self.rest)?;
        self.stream.get_mut().flush()?;
        read_response(self.stream, false)
    }

    /// Reads without sending the rest: what a client stuck mid-upload sees.
    fn abandon(self) -> std::io::Result<Response> {
        read_response(self.stream, false)
    }
}

/// Waits until the listening socket refuses new connections, i.e. the drain has begun. The
/// limit is a hang guard only.
fn wait_until_refusing(s: &Server) {
    let start = Instant::now();
    while TcpStream::connect(s.addr()).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still accepting after SIGTERM; log:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// An idle HTTP/1.1 keep-alive connection that has served one request.
fn idle_keep_alive(s: &Server) -> BufReader<TcpStream> {
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr()).as_bytes())
        .unwrap();
    let mut r = BufReader::new(c);
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    r
}

/// Starts a 4 MiB upload, sends half, SIGTERMs the server, waits until it refuses new
/// connections, runs `while_draining`, sends the rest and expects 201. Returns the digest.
fn upload_across_sigterm(s: &Server, repo: &str, while_draining: impl FnOnce()) -> String {
    let body = random_bytes(4 << 20);
    let digest = sha256_digest(&body);
    let upload = start_upload(s, repo);
    let put = SlowPut::begin(s, &upload, &body, body.len() / 2);
    s.sigterm();
    wait_until_refusing(s);
    while_draining();
    let r = put
        .finish()
        .expect("the in-flight upload gets its response");
    assert_eq!(r.status, 201, "{}", r.describe());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    digest
}

/// The process exits 0 after draining, and the blob is there after a restart.
fn stopped_cleanly_and_kept(s: &mut Server, repo: &str, digest: &str) {
    let status = s.wait_exit(EXIT_LIMIT);
    assert!(status.success(), "exit status {status}; log:\n{}", s.log());
    if Target::current() == Target::Berth {
        let log = s.log();
        assert!(
            log.contains("requests=1"),
            "the drain saw the upload:\n{log}"
        );
        assert!(
            log.contains("drained: every in-flight request finished"),
            "{log}"
        );
    }
    s.restart();
    let r = request(s, "HEAD", &format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(
        r.status, 200,
        "the drained upload's blob exists after a restart"
    );
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    let mut s = Server::start_with(ServerOptions::default().drain_timeout("60s"));
    let mut idle = idle_keep_alive(&s);
    let digest = upload_across_sigterm(&s, "drain/ok", || {
        let mut rest = Vec::new();
        let n = idle.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(
            n, 0,
            "an idle keep-alive connection is closed, not answered"
        );
    });
    stopped_cleanly_and_kept(&mut s, "drain/ok", &digest);
}

#[test]
fn sigterm_lets_an_in_flight_https_upload_finish() {
    let t = TestDir::new("drain-tls");
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server("server", "A1", KeyKind::EcPkcs8);
    let mut s = Server::start_with(ServerOptions::tls(&leaf, &pki.ca()).drain_timeout("60s"));
    let digest = upload_across_sigterm(&s, "drain/tls", || {});
    stopped_cleanly_and_kept(&mut s, "drain/tls", &digest);
}

#[test]
fn drain_timeout_cuts_what_is_left_and_exits_cleanly() {
    let mut s = Server::start_with(ServerOptions::default().drain_timeout("1s"));
    let body = random_bytes(1 << 20);
    let digest = sha256_digest(&body);
    let upload = start_upload(&s, "drain/cut");
    let put = SlowPut::begin(&s, &upload, &body, body.len() / 4);

    s.sigterm();
    let status = s.wait_exit(EXIT_LIMIT);
    // Berth treats a drain that hit its deadline as a normal stop. Distribution 2.8.2 exits 1
    // ("fatal: context deadline exceeded"), so for it only an orderly exit is required.
    if Target::current() == Target::Berth {
        assert!(status.success(), "exit status {status}; log:\n{}", s.log());
    } else {
        assert!(
            status.code().is_some(),
            "killed instead of exiting: {status}"
        );
    }
    let r = put.abandon();
    assert!(r.is_err(), "a cut-off request gets no response: {r:?}");
    if Target::current() == Target::Berth {
        let log = s.log();
        assert!(log.contains("drain timeout reached"), "{log}");
        let cut = log
            .lines()
            .find(|l| l.contains("request cut off by shutdown"))
            .unwrap_or_else(|| panic!("no cut-off line:\n{log}"));
        let what = cut.contains("method=PUT") && cut.contains("/v2/drain/cut/blobs/uploads/");
        assert!(what, "{cut}");
    }

    s.restart();
    let head = request(&s, "HEAD", &format!("/v2/drain/cut/blobs/{digest}"));
    assert_eq!(head.status, 404, "nothing of the cut upload is visible");
}
