//! HTTPS (`http.tls.*`): real clients trusting a test CA through their own mechanisms (skopeo
//! and podman cert dirs, containerd `hosts.toml`, curl `--cacert`), protocol versions, key
//! formats, client certificates, startup errors, and certificate rotation while connections stay
//! open.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::server::berth_bin;
use berth_e2e::tls::{ClientTls, KeyKind, Leaf, Pki, TlsConn};
use berth_e2e::{
    images, sha256_digest, target_reloads_certificates, Cmd, Containerd, Output, Server,
    ServerOptions, TestDir,
};

/// A fresh PKI and an HTTPS server using an EC (PKCS#8) leaf + intermediate chain.
fn https_server(t: &TestDir) -> (Server, Pki) {
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server("server", "A1", KeyKind::EcPkcs8);
    let s = Server::start_with(ServerOptions::tls(&leaf, &pki.ca()));
    (s, pki)
}

fn curl() -> Cmd {
    Cmd::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
    ])
}

/// Pushes the `small` fixture with skopeo, trusting the CA through `cert_dir`.
fn seed(t: &TestDir, s: &Server, cert_dir: &Path, name: &str) {
    t.skopeo()
        .args(["copy", "--quiet", "--dest-cert-dir"])
        .arg(cert_dir)
        .arg(images().reference("small"))
        .arg(format!("docker://{}/{name}", s.addr()))
        .run();
}

#[test]
fn skopeo_and_curl_over_https() {
    let t = TestDir::new("tls-skopeo");
    let (s, pki) = https_server(&t);
    let certs = pki.cert_dir("certs", None);
    seed(&t, &s, &certs, "tls/small:v1");

    let raw = t
        .skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{}/tls/small:v1", s.addr()))
        .run()
        .stdout;
    assert_eq!(
        sha256_digest(raw.as_bytes()),
        images().layout.digest("small")
    );
    t.skopeo()
        .args(["copy", "--quiet", "--src-cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{}/tls/small:v1", s.addr()))
        .arg(format!("oci:{}:v1", t.join("out").display()))
        .run();
    let index = berth_e2e::read_json(&t.join("out/index.json"));
    assert_eq!(
        index["manifests"][0]["digest"],
        images().layout.digest("small")
    );

    // Without the CA the same client must refuse the server: verification is real.
    let out = t
        .skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("docker://{}/tls/small:v1", s.addr()))
        .run_fail();
    assert!(
        out.stderr.contains("x509") || out.stderr.contains("certificate"),
        "{}",
        out.describe()
    );

    let url = format!("{}/v2/", s.url());
    let h2 = curl().arg("--cacert").arg(pki.ca()).arg(&url).stdout();
    assert_eq!(h2, "200 2", "ALPN h2");
    let h1 = curl()
        .args(["--http1.1", "--cacert"])
        .arg(pki.ca())
        .arg(&url)
        .stdout();
    assert_eq!(h1, "200 1.1", "ALPN http/1.1");
    let plain = Cmd::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/", s.addr()))
        .output();
    assert_ne!(
        plain.stdout, "200",
        "plain HTTP must not be served on the TLS port"
    );
}

#[test]
fn podman_push_and_pull_over_https() {
    let t = TestDir::new("tls-podman");
    let (s, pki) = https_server(&t);
    let certs = pki.cert_dir("certs", None);
    seed(&t, &s, &certs, "tls/small:v1");
    let src = format!("{}/tls/small:v1", s.addr());
    t.podman("a")
        .args(["pull", "-q", "--cert-dir"])
        .arg(&certs)
        .arg(&src)
        .run();
    t.podman("a")
        .args(["push", "-q", "--format", "oci", "--cert-dir"])
        .arg(&certs)
        .arg(&src)
        .arg(format!("docker://{}/tls/copy:v1", s.addr()))
        .run();
    let want = t
        .podman("a")
        .args(["image", "inspect", "--format", "{{.Id}}", &src])
        .stdout();
    let dst = format!("{}/tls/copy:v1", s.addr());
    t.podman("b")
        .args(["pull", "-q", "--cert-dir"])
        .arg(&certs)
        .arg(&dst)
        .run();
    let got = t
        .podman("b")
        .args(["image", "inspect", "--format", "{{.Id}}", &dst])
        .stdout();
    assert_eq!(got, want, "same image id after a push and pull over HTTPS");
}

/// `hosts.toml` for `host` trusting `ca` (COOKBOOK §5: top-level `ca` too).
fn hosts_dir(t: &TestDir, host: &str, ca: &Path, client: Option<&Leaf>) -> PathBuf {
    let dir = t.join("hosts");
    fs::create_dir_all(dir.join(host)).unwrap();
    let client_line = client.map_or(String::new(), |c| {
        format!("  client = [[{:?}, {:?}]]\n", c.cert, c.key)
    });
    let toml = format!(
        "server = \"https://{host}\"\nca = {ca:?}\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = {ca:?}\n{client_line}"
    );
    fs::write(dir.join(host).join("hosts.toml"), toml).unwrap();
    dir
}

#[test]
fn ctr_pulls_and_pushes_over_https_with_hosts_toml() {
    let t = TestDir::new("tls-ctr");
    let (s, pki) = https_server(&t);
    let certs = pki.cert_dir("certs", None);
    seed(&t, &s, &certs, "tls/small:v1");
    let hosts = hosts_dir(&t, &s.addr(), &pki.ca(), None);
    let c = Containerd::start();
    let src = format!("{}/tls/small:v1", s.addr());
    c.ctr("e2e")
        .args(["images", "pull", "--hosts-dir"])
        .arg(&hosts)
        .arg(&src)
        .run();
    let dst = format!("{}/tls/ctr:v1", s.addr());
    c.ctr("e2e").args(["images", "tag", &src, &dst]).run();
    c.ctr("e2e")
        .args(["images", "push", "--hosts-dir"])
        .arg(&hosts)
        .arg(&dst)
        .run();
    let raw = t
        .skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{dst}"))
        .run()
        .stdout;
    assert_eq!(
        sha256_digest(raw.as_bytes()),
        images().layout.digest("small")
    );
}

/// `openssl s_client` offering exactly one protocol version (`-tls1_1`, `-tls1_2`, `-tls1_3`).
/// `@SECLEVEL=0` lets OpenSSL 3 offer TLS 1.1 at all, so a refusal comes from the server.
fn s_client(s: &Server, ca: &Path, version_flag: &str) -> Output {
    Cmd::new("openssl")
        .args([
            "s_client",
            "-connect",
            &s.addr(),
            "-servername",
            "localhost",
            version_flag,
        ])
        .args([
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .stdin("")
        .output()
}

#[test]
fn tls_1_2_and_1_3_accepted_older_refused() {
    let t = TestDir::new("tls-versions");
    let (s, pki) = https_server(&t);
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(&s, &pki.ca(), flag);
        assert!(out.success(), "{name} refused:\n{}", out.describe());
        assert!(
            out.stdout.contains(&format!("Protocol  : {name}"))
                || out.stdout.contains(&format!("New, {name}")),
            "{}",
            out.describe()
        );
        assert!(
            out.stdout.contains("Verify return code: 0 (ok)"),
            "{}",
            out.describe()
        );
    }
    let old = s_client(&s, &pki.ca(), "-tls1_1");
    assert!(!old.success(), "TLS 1.1 accepted:\n{}", old.describe());
    assert!(
        old.stderr.contains("alert"),
        "the server must answer TLS 1.1 with an alert:\n{}",
        old.describe()
    );
    let curl11 = curl()
        .args([
            "--tlsv1.1",
            "--tls-max",
            "1.1",
            "--ciphers",
            "DEFAULT@SECLEVEL=0",
            "--cacert",
        ])
        .arg(pki.ca())
        .arg(format!("{}/v2/", s.url()))
        .output();
    assert!(!curl11.success(), "{}", curl11.describe());
    let tls = s.client_tls().unwrap();
    let c12 = TlsConn::connect_with(&s.addr(), tls, &[&rustls::version::TLS12]).unwrap();
    assert_eq!(c12.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let c13 = TlsConn::connect_with(&s.addr(), tls, &[&rustls::version::TLS13]).unwrap();
    assert_eq!(c13.version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn minimumtls_tls1_3_refuses_tls_1_2() {
    let t = TestDir::new("tls-min13");
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server("server", "A1", KeyKind::EcPkcs8);
    let s = Server::start_with(ServerOptions::tls(&leaf, &pki.ca()).min_tls("tls1.3"));
    let tls = s.client_tls().unwrap();
    assert!(TlsConn::connect_with(&s.addr(), tls, &[&rustls::version::TLS12]).is_err());
    let mut c = TlsConn::connect_with(&s.addr(), tls, &[&rustls::version::TLS13]).unwrap();
    assert_eq!(c.request("GET", "/v2/", b"").unwrap().status, 200);
    assert!(!s_client(&s, &pki.ca(), "-tls1_2").success());
}

#[test]
fn every_key_format_serves() {
    let t = TestDir::new("tls-keys");
    let pki = Pki::new(&t.join("pki"));
    let kinds = [
        (KeyKind::EcPkcs8, "PRIVATE KEY"),
        (KeyKind::EcSec1, "EC PRIVATE KEY"),
        (KeyKind::RsaPkcs1, "RSA PRIVATE KEY"),
        (KeyKind::RsaPkcs8, "PRIVATE KEY"),
        (KeyKind::Ed25519, "PRIVATE KEY"),
    ];
    for (i, (kind, pem_label)) in kinds.into_iter().enumerate() {
        let leaf = pki.server(&format!("k{i}"), &format!("B{i}"), kind);
        let pem = fs::read_to_string(&leaf.key).unwrap();
        assert!(
            pem.starts_with(&format!("-----BEGIN {pem_label}-----")),
            "{kind:?}: {pem}"
        );
        let s = Server::start_with(ServerOptions::tls(&leaf, &pki.ca()));
        let mut c = TlsConn::connect(&s.addr(), s.client_tls().unwrap()).unwrap();
        assert_eq!(c.peer_leaf(), leaf.leaf_der(), "{kind:?}");
        assert_eq!(
            c.request("GET", "/v2/", b"").unwrap().status,
            200,
            "{kind:?}"
        );
    }
}

/// Runs `berth serve` with `http.tls` set from `tls_yaml` and expects it to refuse to start.
fn berth_refuses(t: &TestDir, tls_yaml: &str) -> String {
    let cfg = t.join("bad.yml");
    let yaml = format!(
        "version: 0.1\nhttp:\n  addr: 127.0.0.1:0\n  tls:\n{tls_yaml}storage:\n  filesystem:\n    rootdirectory: {}\n",
        t.join("data").display()
    );
    fs::write(&cfg, yaml).unwrap();
    let out = Cmd::new(berth_bin().to_str().unwrap())
        .args(["serve", "--config"])
        .arg(&cfg)
        .timeout(Duration::from_secs(60))
        .output();
    assert_eq!(
        out.status.code(),
        Some(1),
        "berth must refuse to start:\n{}",
        out.describe()
    );
    out.stderr
}

/// These run the berth binary whatever `E2E_TARGET` says: the messages are Berth's.
#[test]
fn clear_startup_errors() {
    let t = TestDir::new("tls-startup");
    let pki = Pki::new(&t.join("pki"));
    let a = pki.server("a", "A1", KeyKind::EcPkcs8);
    let b = pki.server("b", "B1", KeyKind::RsaPkcs1);
    let y = |cert: &Path, key: &Path| {
        format!(
            "    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        )
    };
    let missing = t.join("missing.pem");
    let err = berth_refuses(&t, &y(&missing, &a.key));
    assert!(
        err.contains("http.tls.certificate: cannot read") && err.contains("missing.pem"),
        "{err}"
    );
    let err = berth_refuses(&t, &y(&a.cert, &missing));
    assert!(
        err.contains("http.tls.key: cannot read") && err.contains("missing.pem"),
        "{err}"
    );
    let err = berth_refuses(&t, &y(&a.cert, &b.key));
    assert!(
        err.contains("does not match the certificate"),
        "mismatched pair: {err}"
    );
    let err = berth_refuses(&t, &y(&a.key, &a.key));
    assert!(
        err.contains("http.tls.certificate") && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );
    let err = berth_refuses(&t, &y(&a.cert, &a.cert));
    assert!(
        err.contains("http.tls.key") && err.contains("no PEM private key"),
        "{err}"
    );
    let encrypted = t.join("enc.key");
    Cmd::new("openssl")
        .args(["pkcs8", "-topk8", "-passout", "pass:x", "-in"])
        .arg(&a.key)
        .arg("-out")
        .arg(&encrypted)
        .run();
    let err = berth_refuses(&t, &y(&a.cert, &encrypted));
    assert!(err.contains("encrypted"), "{err}");
    let unreadable = t.join("dir.pem");
    fs::create_dir_all(&unreadable).unwrap();
    let err = berth_refuses(&t, &y(&a.cert, &unreadable));
    assert!(err.contains("http.tls.key: cannot read"), "{err}");
    for old in ["tls1.0", "tls1.1"] {
        let err = berth_refuses(
            &t,
            &format!("{}    minimumtls: {old}\n", y(&a.cert, &a.key)),
        );
        assert!(
            err.contains("http.tls.minimumtls") && err.contains(old),
            "{err}"
        );
    }
    let err = berth_refuses(
        &t,
        &format!(
            "{}    clientcas:\n      - {}\n",
            y(&a.cert, &a.key),
            missing.display()
        ),
    );
    assert!(err.contains("http.tls.clientcas: cannot read"), "{err}");
    let err = berth_refuses(
        &t,
        &format!(
            "{}    clientcas:\n      - {}\n",
            y(&a.cert, &a.key),
            a.key.display()
        ),
    );
    assert!(
        err.contains("http.tls.clientcas") && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );
}

/// The Kubernetes secret-volume layout cert-manager produces: `tls.crt` → `..data/tls.crt`,
/// `..data` → a versioned directory, replaced by an atomic rename of a new `..data` link.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: PathBuf, leaf: &Leaf) -> SecretVolume {
        fs::create_dir_all(&dir).unwrap();
        symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        symlink("..data/tls.key", dir.join("tls.key")).unwrap();
        let mut v = SecretVolume { dir, version: 0 };
        v.publish(leaf);
        v
    }

    fn leaf(&self) -> Leaf {
        Leaf {
            cert: self.dir.join("tls.crt"),
            key: self.dir.join("tls.key"),
            serial: String::new(),
        }
    }

    /// Writes a new version directory and swaps `..data` onto it atomically.
    fn publish(&mut self, leaf: &Leaf) {
        self.version += 1;
        let name = format!("..v{}", self.version);
        let vdir = self.dir.join(&name);
        fs::create_dir_all(&vdir).unwrap();
        fs::copy(&leaf.cert, vdir.join("tls.crt")).unwrap();
        fs::copy(&leaf.key, vdir.join("tls.key")).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink(&name, &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// Opens new connections until one presents `want` (a DER leaf). `limit` only guards against
/// a hang: reload happens within a few seconds, never asserted on.
fn wait_for_cert(s: &Server, want: &[u8], what: &str) {
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    loop {
        if let Ok(c) = TlsConn::connect(&s.addr(), s.client_tls().unwrap()) {
            if c.peer_leaf() == want {
                return;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{what}: still not served after {limit:?}; log:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The serial `openssl s_client` sees on a new handshake.
fn served_serial(s: &Server, ca: &Path) -> String {
    let script = format!(
        "openssl s_client -connect {} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial",
        s.addr(),
        ca.display()
    );
    let out = Cmd::new("sh").args(["-c", &script]).stdout();
    out.trim().trim_start_matches("serial=").to_string()
}

/// Waits until the server log contains `needle` (hang guard only).
fn wait_for_log(s: &Server, needle: &str) {
    let start = Instant::now();
    while !s.log().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {needle:?} in the log:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rotation_serves_the_new_certificate_and_keeps_open_connections() {
    if !target_reloads_certificates() {
        return;
    }
    let t = TestDir::new("tls-rotate");
    let pki = Pki::new(&t.join("pki"));
    let first = pki.server("first", "A1", KeyKind::EcPkcs8);
    let second = pki.server("second", "B2", KeyKind::RsaPkcs8);
    let mut volume = SecretVolume::new(t.join("secret"), &first);
    let s = Server::start_with(ServerOptions::tls(&volume.leaf(), &pki.ca()));
    let tls = s.client_tls().unwrap().clone();
    assert_eq!(served_serial(&s, &pki.ca()), first.serial);

    // A keep-alive connection opened before the renewal.
    let mut kept = TlsConn::connect(&s.addr(), &tls).unwrap();
    assert_eq!(kept.request("GET", "/v2/", b"").unwrap().status, 200);
    assert_eq!(kept.peer_leaf(), first.leaf_der());

    // cert-manager style: a symlink swap.
    volume.publish(&second);
    wait_for_cert(&s, &second.leaf_der(), "the renewed certificate");
    assert_eq!(served_serial(&s, &pki.ca()), second.serial);
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("reloaded TLS certificate"))
        .unwrap_or_else(|| panic!("no reload line:\n{log}"));
    let serial = line.split("serial=").nth(1).unwrap_or("");
    assert!(
        serial.trim_start_matches('"').starts_with(&second.serial),
        "{line}"
    );

    // The old connection still works, on the session it negotiated.
    let r = kept.request("GET", "/v2/_catalog", b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(kept.peer_leaf(), first.leaf_der());

    // Let's Encrypt style in-place rewrite, first broken: a certificate whose key is missing.
    let third = pki.server("third", "C3", KeyKind::EcSec1);
    let live = volume.dir.join("..data");
    fs::copy(&third.cert, live.join("tls.crt")).unwrap();
    wait_for_log(&s, "does not match the certificate");
    assert!(
        s.log()
            .contains("the new TLS certificate or key is unusable"),
        "{}",
        s.log()
    );
    assert_eq!(
        served_serial(&s, &pki.ca()),
        second.serial,
        "a broken pair keeps the old certificate"
    );
    let mut c = TlsConn::connect(&s.addr(), &tls).unwrap();
    assert_eq!(c.request("GET", "/v2/", b"").unwrap().status, 200);

    // Completing the pair is picked up.
    fs::copy(&third.key, live.join("tls.key")).unwrap();
    wait_for_cert(&s, &third.leaf_der(), "the repaired pair");
    assert_eq!(served_serial(&s, &pki.ca()), third.serial);
    let r = kept.request("GET", "/v2/", b"").unwrap();
    assert_eq!(r.status, 200, "the first connection survives two renewals");
}

#[test]
fn client_certificates_required_when_clientcas_set() {
    let t = TestDir::new("tls-mtls");
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server("server", "A1", KeyKind::EcPkcs8);
    let alice = pki.client("alice", "alice");
    let s = Server::start_with(
        ServerOptions::tls(&leaf, &pki.ca()).client_cas(&pki.client_ca(), &alice),
    );
    let with = s.client_tls().unwrap().clone();
    let without = ClientTls {
        client: None,
        ..with.clone()
    };
    // A client certificate from a CA the server does not trust: the server's own leaf's chain.
    let stranger = ClientTls {
        client: Some(pki.server("stranger", "D4", KeyKind::EcPkcs8)),
        ..with.clone()
    };

    let mut ok = TlsConn::connect(&s.addr(), &with).unwrap();
    assert_eq!(ok.request("GET", "/v2/", b"").unwrap().status, 200);
    // The refusal happens in the handshake: no HTTP response is ever read.
    for (what, tls) in [
        ("no certificate", &without),
        ("untrusted certificate", &stranger),
    ] {
        let r = TlsConn::connect(&s.addr(), tls).and_then(|mut c| c.request("GET", "/v2/", b""));
        assert!(r.is_err(), "{what}: got a response {r:?}");
    }

    let url = format!("{}/v2/", s.url());
    let refused = curl().arg("--cacert").arg(pki.ca()).arg(&url).output();
    assert!(
        !refused.success(),
        "curl without a client cert:\n{}",
        refused.describe()
    );
    let accepted = curl()
        .arg("--cacert")
        .arg(pki.ca())
        .arg("--cert")
        .arg(&alice.cert)
        .arg("--key")
        .arg(&alice.key)
        .arg(&url)
        .stdout();
    assert_eq!(accepted, "200 2");

    // containers/image clients pick `client.cert`/`client.key` from the cert dir.
    let with_dir = pki.cert_dir("with-client", Some(&alice));
    let without_dir = pki.cert_dir("without-client", None);
    seed(&t, &s, &with_dir, "mtls/small:v1");
    let out = t
        .skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&without_dir)
        .arg(format!("docker://{}/mtls/small:v1", s.addr()))
        .run_fail();
    assert!(
        out.stderr.contains("certificate") || out.stderr.contains("tls"),
        "{}",
        out.describe()
    );

    let hosts = hosts_dir(&t, &s.addr(), &pki.ca(), Some(&alice));
    let c = Containerd::start();
    c.ctr("e2e")
        .args(["images", "pull", "--hosts-dir"])
        .arg(&hosts)
        .arg(format!("{}/mtls/small:v1", s.addr()))
        .run();
}
