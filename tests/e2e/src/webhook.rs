//! A real webhook receiver for notification tests: a small HTTP/1.1 server on a loopback port
//! that records every request (path, headers, body) and answers with a configurable status.
//!
//! It can be stopped (the listener is closed and open keep-alive connections are shut down, so
//! the registry sees connection errors) and started again on the same port. Only requests it
//! answered with a 2xx status count as delivered; a request is recorded as delivered only after
//! the whole answer was written.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Post {
    /// Method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
}

impl Post {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `events` array of a registry:2 envelope; panics if the body is not one.
    pub fn events(&self) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        });
        v["events"]
            .as_array()
            .unwrap_or_else(|| panic!("webhook body has no events array: {v}"))
            .clone()
    }
}

#[derive(Default)]
struct Shared {
    posts: Mutex<Vec<Post>>,
    status: AtomicU16,
    running: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// The receiver; stopped when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts on a free loopback port, answering 200.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        shared.status.store(200, Ordering::SeqCst);
        let mut r = Receiver {
            port,
            shared,
            accept: None,
        };
        r.run(listener);
        r
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status later requests are answered with.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection.
    pub fn stop(&mut self) {
        self.shared.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.shared.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (retrying while the port is briefly unavailable).
    pub fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on 127.0.0.1:{} again: {e}", self.port),
            }
        };
        self.run(listener);
    }

    /// Every request so far.
    pub fn posts(&self) -> Vec<Post> {
        self.shared.posts.lock().expect("posts").clone()
    }

    /// The events delivered to `path` (answered 2xx), in arrival order, flattened over batches.
    pub fn events(&self, path: &str) -> Vec<Value> {
        self.posts()
            .iter()
            .filter(|p| p.path == path && (200..300).contains(&p.status))
            .flat_map(Post::events)
            .collect()
    }

    /// Waits (at most `limit`) until at least `n` events were delivered to `path`; returns them.
    /// Panics with what arrived when the limit passes.
    #[track_caller]
    pub fn wait_events(&self, path: &str, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.events(path);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                let summary: Vec<String> = got.iter().map(summarize).collect();
                panic!(
                    "{path}: {} of {n} events within {limit:?}: {summary:#?}",
                    got.len()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn run(&mut self, listener: TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        self.shared.running.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.accept = Some(thread::spawn(move || accept_loop(listener, shared)));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `action repository tag digest` of an event, for failure messages.
pub fn summarize(e: &Value) -> String {
    let t = &e["target"];
    format!(
        "{} {} tag={} digest={} ({})",
        e["action"].as_str().unwrap_or("?"),
        t["repository"].as_str().unwrap_or("?"),
        t["tag"].as_str().unwrap_or(""),
        t["digest"].as_str().unwrap_or(""),
        t["mediaType"].as_str().unwrap_or("")
    )
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while shared.running.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if let Ok(c) = stream.try_clone() {
                    shared.conns.lock().expect("conns").push(c);
                }
                let shared = shared.clone();
                thread::spawn(move || {
                    let _ = serve_connection(stream, &shared);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Serves keep-alive requests until the client closes or the receiver stops.
fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(mut post) = read_request(&mut reader)? else {
            return Ok(());
        };
        if !shared.running.load(Ordering::SeqCst) {
            return Ok(());
        }
        post.status = shared.status.load(Ordering::SeqCst);
        let answer = format!("HTTP/1.1 {} X\r\nContent-Length: 0\r\n\r\n", post.status);
        writer.write_all(answer.as_bytes())?;
        writer.flush()?;
        shared.posts.lock().expect("posts").push(post);
    }
}

fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Post>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, line)),
    };
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body)?;
    Ok(Some(Post {
        method,
        path,
        headers,
        body,
        status: 0,
    }))
}
