//! A real nginx (Debian's `nginx` package) in front of several registry replicas, as a load
//! balancer is set up for Berth in production (docs/deploy-ha.md): round-robin over the
//! upstreams with no stickiness, unlimited body size, request and response buffering off (blobs
//! stream through in both directions), long timeouts for large blobs, `Host` and `X-Forwarded-*`
//! passed on. [`Nginx::start_tls`] terminates TLS in front, as a compose file with nginx and
//! Berth does.
//!
//! It runs as a non-daemon child (`daemon off`, one worker) with a generated config, pid file,
//! logs and temp paths in its own temp dir, on a free 127.0.0.1 port, and is killed when the
//! [`Nginx`] is dropped (and by the kernel if the test dies first).

use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::require_tool;
use crate::http;
use crate::server::{die_with_parent, free_port, keep_or_remove, tail_lines};

/// TLS termination for [`Nginx::start_tls`]: the loopback address to listen on and the
/// certificate chain and key to present.
#[derive(Debug, Clone)]
pub struct TlsFront {
    /// `127.0.0.1` or `::1`.
    pub listen: String,
    /// PEM chain (leaf first).
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
}

impl TlsFront {
    /// The `listen` address as it is written before `:PORT` (`[::1]` for IPv6).
    fn host(&self) -> String {
        if self.listen.contains(':') {
            format!("[{}]", self.listen)
        } else {
            self.listen.clone()
        }
    }
}

/// A running nginx proxying to a fixed set of upstreams.
pub struct Nginx {
    child: Option<Child>,
    dir: Option<TempDir>,
    port: u16,
    tls: Option<TlsFront>,
}

impl Nginx {
    /// Starts nginx on a free port in front of `upstreams` (`127.0.0.1:PORT` each) and waits
    /// until `GET /v2/` through it answers 200.
    pub fn start(upstreams: &[String]) -> Nginx {
        Nginx::launch(upstreams, None)
    }

    /// Like [`Nginx::start`], terminating TLS (HTTP/1.1) on `front.listen`; upstreams get
    /// `X-Forwarded-Proto: https`. Ready once nginx has written
    /// its pid file (its sockets are bound then) and accepts TCP connections; trust and name
    /// checks are the clients' business.
    pub fn start_tls(upstreams: &[String], front: &TlsFront) -> Nginx {
        Nginx::launch(upstreams, Some(front))
    }

    fn launch(upstreams: &[String], tls: Option<&TlsFront>) -> Nginx {
        let bin = require_tool("nginx");
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("berth-e2e-nginx-")
                .tempdir()
                .expect("temp dir");
            let port = free_port();
            fs::write(
                dir.path().join("nginx.conf"),
                config(dir.path(), &listen(port, tls), upstreams),
            )
            .expect("write nginx.conf");
            let mut n = Nginx {
                child: None,
                dir: Some(dir),
                port,
                tls: tls.cloned(),
            };
            n.spawn(&bin);
            match n.wait_ready() {
                Ok(()) => return n,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nginx found no free port after 5 tries:\n{last}")
    }

    /// `127.0.0.1:PORT` (`[::1]:PORT` for a TLS front on `::1`).
    pub fn addr(&self) -> String {
        let host = self.tls.as_ref().map_or("127.0.0.1".into(), TlsFront::host);
        format!("{host}:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://…` for a TLS front).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir().join("error.log")).unwrap_or_default()
    }

    /// The access log so far: one line per request, `<upstream addr> <status> <request>`.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir().join("access.log")).unwrap_or_default()
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("nginx dir").path()
    }

    fn spawn(&mut self, bin: &PathBuf) {
        let log = fs::File::create(self.dir().join("stderr.log")).expect("nginx stderr log");
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(self.dir())
            .arg("-c")
            .arg(self.dir().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            // its own process group: SIGKILL to the master alone would leave the worker behind
            .process_group(0);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("spawn nginx"));
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let stderr = fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default();
                return Err(format!(
                    "nginx exited ({status}):\n{stderr}\n{}",
                    self.error_log()
                ));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("nginx not ready after 10 s:\n{}", self.error_log()));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Plain HTTP: `GET /v2/` answers 200. TLS: the pid file names our child and the port
    /// accepts connections.
    fn answers(&self) -> bool {
        if self.tls.is_none() {
            return http::request("GET", &format!("{}/v2/", self.url()), &[], &[])
                .is_ok_and(|r| r.status == 200);
        }
        let pid = fs::read_to_string(self.dir().join("nginx.pid")).unwrap_or_default();
        let ours = self.child.as_ref().map(|c| c.id().to_string());
        ours.as_deref() == Some(pid.trim()) && TcpStream::connect(self.addr()).is_ok()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pgid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: kill has no memory preconditions; the group is nginx's own (process_group(0)).
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "===== nginx error log =====\n{}\n===== nginx access log =====\n{}",
                tail_lines(&self.error_log(), 50),
                tail_lines(&self.access_log(), 50)
            );
        }
        keep_or_remove(self.dir.take());
    }
}

/// The `listen` directive (plus the certificate lines for TLS) of the server block.
fn listen(port: u16, tls: Option<&TlsFront>) -> String {
    match tls {
        None => format!("listen 127.0.0.1:{port};"),
        Some(t) => format!(
            "listen {}:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
            t.host(),
            t.cert.display(),
            t.key.display()
        ),
    }
}

/// The generated nginx.conf: the settings docs/deploy-ha.md recommends.
fn config(dir: &Path, listen: &str, upstreams: &[String]) -> String {
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u} max_fails=0;\n"))
        .collect();
    let d = dir.display();
    // nginx started by root switches its workers to `user`; root keeps them able to use the
    // temp dir (the tests run as root; as another user the directive is ignored).
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        r#"{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstreamlog '$upstream_addr $status "$request"';
  access_log {d}/access.log upstreamlog;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream berth {{
{servers}    keepalive 16;
  }}
  server {{
    {listen}
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout 5s;
    proxy_send_timeout 900s;
    proxy_read_timeout 900s;
    location / {{
      proxy_pass http://berth;
    }}
  }}
}}
"#
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
