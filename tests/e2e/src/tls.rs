//! Certificates made with the real `openssl` CLI, and a small rustls client for what the CLIs
//! cannot show: which certificate a handshake presented, and a keep-alive connection that stays
//! open across a certificate rotation.
//!
//! The server chain is root CA → intermediate CA → leaf, and the certificate file holds leaf +
//! intermediate, so every test also proves the chain is served. Clients trust the root only.
//! (A self-signed certificate used directly as the server certificate is rejected by rustls
//! clients with `CaUsedAsEndEntity`; see the COOKBOOK.) Client certificates come from a separate
//! client CA, the one `http.tls.clientcas` names.

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::cmd::Cmd;
use crate::http::{self, Response};

/// The private key format of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// P-256, PKCS#8 (`PRIVATE KEY`).
    EcPkcs8,
    /// P-256, SEC1 (`EC PRIVATE KEY`).
    EcSec1,
    /// RSA 2048, PKCS#1 (`RSA PRIVATE KEY`).
    RsaPkcs1,
    /// RSA 2048, PKCS#8.
    RsaPkcs8,
    /// Ed25519, PKCS#8.
    Ed25519,
}

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM chain: the leaf, then the intermediate (server certificates) or the leaf alone.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Serial in upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl Leaf {
    /// The DER of the leaf (the first certificate of the chain).
    pub fn leaf_der(&self) -> Vec<u8> {
        let first = CertificateDer::pem_file_iter(&self.cert)
            .expect("read cert")
            .next()
            .expect("a certificate")
            .expect("valid PEM");
        first.to_vec()
    }
}

/// A test PKI under one directory.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes the root, the intermediate and the client CA in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let pki = Pki { dir: dir.into() };
        pki.self_signed("root", "Berth e2e root CA");
        pki.self_signed("client-ca", "Berth e2e client CA");
        pki.sign(
            "intermediate",
            "Berth e2e intermediate CA",
            "root",
            CA_EXT,
            "01",
            KeyKind::EcPkcs8,
        );
        pki
    }

    /// The root CA certificate clients trust (`ca.crt` in cert dirs).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("root.crt")
    }

    /// The client CA certificate for `http.tls.clientcas`.
    pub fn client_ca(&self) -> PathBuf {
        self.dir.join("client-ca.crt")
    }

    /// A server certificate for `127.0.0.1` and `localhost` with serial `serial` (hex), signed
    /// by the intermediate; `cert` holds leaf + intermediate.
    pub fn server(&self, name: &str, serial: &str, kind: KeyKind) -> Leaf {
        let leaf = self.sign(name, "127.0.0.1", "intermediate", SERVER_EXT, serial, kind);
        self.with_chain(name, leaf)
    }

    /// A server certificate (EC, PKCS#8) for the subject alternative names `san`, in openssl
    /// syntax (`DNS:registry.example,IP:::1`), with the first name as its common name; otherwise
    /// like [`Pki::server`].
    pub fn server_for(&self, name: &str, serial: &str, san: &str) -> Leaf {
        let ext = SERVER_EXT.replace("IP:127.0.0.1,DNS:localhost", san);
        let cn = san.split(',').next().unwrap_or(san);
        let cn = cn.split_once(':').map_or(cn, |(_, v)| v);
        let leaf = self.sign(name, cn, "intermediate", &ext, serial, KeyKind::EcPkcs8);
        self.with_chain(name, leaf)
    }

    /// `leaf` with its certificate file replaced by leaf + intermediate.
    fn with_chain(&self, name: &str, mut leaf: Leaf) -> Leaf {
        let chain = [
            std::fs::read(&leaf.cert).expect("leaf"),
            std::fs::read(self.dir.join("intermediate.crt")).expect("intermediate"),
        ]
        .concat();
        let chain_path = self.dir.join(format!("{name}-chain.crt"));
        std::fs::write(&chain_path, chain).expect("write chain");
        leaf.cert = chain_path;
        leaf
    }

    /// A client certificate with common name `cn`, signed by the client CA.
    pub fn client(&self, name: &str, cn: &str) -> Leaf {
        self.sign(name, cn, "client-ca", CLIENT_EXT, "7001", KeyKind::EcPkcs8)
    }

    /// A directory laid out as containers/image and docker expect (`ca.crt`, and
    /// `client.cert` + `client.key` when `client` is given).
    pub fn cert_dir(&self, name: &str, client: Option<&Leaf>) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).expect("cert dir");
        std::fs::copy(self.ca(), d.join("ca.crt")).expect("copy ca");
        if let Some(c) = client {
            std::fs::copy(&c.cert, d.join("client.cert")).expect("copy client cert");
            std::fs::copy(&c.key, d.join("client.key")).expect("copy client key");
        }
        d
    }

    fn self_signed(&self, name: &str, cn: &str) {
        let key = self.key(name, KeyKind::EcPkcs8);
        let cfg = self.req_config(name, CA_EXT);
        Cmd::new("openssl")
            .args(["req", "-x509", "-new", "-key"])
            .arg(&key)
            .args([
                "-subj",
                &format!("/CN={cn}"),
                "-days",
                "3",
                "-set_serial",
                "1000",
            ])
            .arg("-config")
            .arg(&cfg)
            .args(["-extensions", "v3", "-out"])
            .arg(self.dir.join(format!("{name}.crt")))
            .run();
    }

    fn sign(&self, name: &str, cn: &str, ca: &str, ext: &str, serial: &str, kind: KeyKind) -> Leaf {
        let key = self.key(name, kind);
        let csr = self.dir.join(format!("{name}.csr"));
        let ext_path = self.req_config(name, ext);
        Cmd::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&key)
            .args(["-subj", &format!("/CN={cn}"), "-config"])
            .arg(&ext_path)
            .arg("-out")
            .arg(&csr)
            .run();
        let cert = self.dir.join(format!("{name}.crt"));
        Cmd::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(self.dir.join(format!("{ca}.crt")))
            .arg("-CAkey")
            .arg(self.dir.join(format!("{ca}.key")))
            .args(["-set_serial", &format!("0x{serial}"), "-days", "2"])
            .args(["-extensions", "v3", "-extfile"])
            .arg(&ext_path)
            .arg("-out")
            .arg(&cert)
            .run();
        Leaf {
            cert,
            key,
            serial: serial.to_ascii_uppercase(),
        }
    }

    /// An openssl config with an empty `[req]` and the extensions `ext` (section `v3`).
    fn req_config(&self, name: &str, ext: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.cnf"));
        let text = format!("[req]\ndistinguished_name=dn\n[dn]\n{ext}");
        std::fs::write(&path, text).expect("openssl config");
        path
    }

    fn key(&self, name: &str, kind: KeyKind) -> PathBuf {
        let path = self.dir.join(format!("{name}.key"));
        let args: &[&str] = match kind {
            KeyKind::EcPkcs8 => &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            KeyKind::EcSec1 => &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            KeyKind::RsaPkcs1 => &["genrsa", "-traditional"],
            KeyKind::RsaPkcs8 => &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            KeyKind::Ed25519 => &["genpkey", "-algorithm", "ED25519"],
        };
        let mut cmd = Cmd::new("openssl").args(args).arg("-out").arg(&path);
        if kind == KeyKind::RsaPkcs1 {
            cmd = cmd.arg("2048"); // genrsa: the size comes after the options
        }
        cmd.run();
        path
    }
}

const CA_EXT: &str = "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
const SERVER_EXT: &str = "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
const CLIENT_EXT: &str = "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";

/// How the test harness and [`TlsConn`] reach an HTTPS registry.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA to trust.
    pub ca: PathBuf,
    /// A client certificate to present.
    pub client: Option<Leaf>,
}

impl ClientTls {
    fn config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> io::Result<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(&self.ca).map_err(io::Error::other)? {
            roots
                .add(der.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(io::Error::other)?
            .with_root_certificates(roots);
        let mut config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = CertificateDer::pem_file_iter(&c.cert)
                    .map_err(io::Error::other)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(io::Error::other)?;
                let key = PrivateKeyDer::from_pem_file(&c.key).map_err(io::Error::other)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(io::Error::other)?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// One HTTPS connection with keep-alive, speaking HTTP/1.1.
pub struct TlsConn {
    authority: String,
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    /// Connects to `authority` (`127.0.0.1:PORT`) and completes the handshake (TLS 1.2 or 1.3).
    pub fn connect(authority: &str, tls: &ClientTls) -> io::Result<TlsConn> {
        Self::connect_with(authority, tls, rustls::DEFAULT_VERSIONS)
    }

    /// Like [`TlsConn::connect`], offering only `versions`.
    pub fn connect_with(
        authority: &str,
        tls: &ClientTls,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> io::Result<TlsConn> {
        let config = Arc::new(tls.config(versions)?);
        let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tcp = TcpStream::connect(authority)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(60)))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(TlsConn {
            authority: authority.into(),
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        })
    }

    /// The DER of the certificate the server presented.
    pub fn peer_leaf(&self) -> Vec<u8> {
        self.stream
            .get_ref()
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().conn.protocol_version()
    }

    /// The TLS stream, for requests written by hand. Call it before reading anything: bytes
    /// already buffered would be lost.
    pub fn into_inner(self) -> StreamOwned<ClientConnection, TcpStream> {
        self.stream.into_inner()
    }

    /// Sends one request and reads the response; the connection stays open.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.authority,
            body.len()
        );
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        http::read_response(&mut self.stream, method == "HEAD")
    }
}

/// `GET /v2/` over a fresh connection; `Ok(status)` when the handshake and request worked.
pub fn probe(authority: &str, tls: &ClientTls) -> io::Result<u16> {
    TlsConn::connect(authority, tls)?
        .request("GET", "/v2/", b"")
        .map(|r| r.status)
}
