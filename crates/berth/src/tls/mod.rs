//! HTTPS for Berth's listeners: rustls configured from registry:2's `http.tls` keys.
//!
//! Design decisions:
//! - **rustls with the `ring` provider.** Both rustls providers do TLS 1.2 and 1.3 with AES-GCM and
//!   ChaCha20 at line rate on this hardware; `ring` is the lighter build: a small C/assembly core
//!   compiled by `cc` (a cold build of `ring` took 17 s of CPU here), where `aws-lc-rs` compiles
//!   the whole AWS-LC C library (the COOKBOOK's cold build of `oci-client`, dominated by
//!   `aws-lc-sys`, takes about 6 minutes on 2 cores) and makes a larger binary. The PostgreSQL
//!   client already uses rustls with `ring`, so the binary carries one crypto library. The
//!   provider is passed explicitly ([`rustls::ServerConfig::builder_with_provider`]), so the
//!   build stays correct when another crate of the workspace (the e2e tests' `oci-client`) turns
//!   on `aws-lc-rs` too.
//! - **TLS 1.2 and 1.3 only.** rustls implements nothing older, so a TLS 1.0/1.1 client is refused
//!   in the handshake; `http.tls.minimumtls: tls1.3` drops 1.2 as well.
//! - **Rotation through a resolver**, not by rebuilding the config: see [`reload`]. Session
//!   caches and tickets survive a renewal, and connections in flight are never touched.
//! - **Client certificates** (`http.tls.clientcas`): with CA files configured every client must
//!   present a certificate chaining to one of them, as registry:2's `RequireAndVerifyClientCert`;
//!   a client without one is refused in the handshake, before any HTTP is spoken. The CA files
//!   are read at startup.
//! - ALPN offers `h2` and `http/1.1`; the connection layer serves whichever was negotiated.

mod der;
mod pem;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

pub use pem::TlsError;
pub use reload::{Reloader, ReloadingResolver};

use reload::KeySource;

/// How often the certificate and key files are checked for a renewal.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The lowest TLS version a listener accepts (`http.tls.minimumtls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default, as in registry:2).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What a listener needs for HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificate chain, leaf first (`http.tls.certificate`).
    pub certificate: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 or SEC1 (`http.tls.key`).
    pub key: PathBuf,
    /// PEM CA bundles for client certificates (`http.tls.clientcas`); empty: none asked for.
    pub client_cas: Vec<PathBuf>,
    /// Lowest accepted version (`http.tls.minimumtls`).
    pub min_version: TlsVersion,
    /// How often the files are polled for a renewal.
    pub reload_interval: Duration,
}

impl TlsOptions {
    /// Options with the defaults: no client certificates, TLS 1.2 and up, [`RELOAD_INTERVAL`].
    pub fn new(certificate: PathBuf, key: PathBuf) -> TlsOptions {
        TlsOptions {
            certificate,
            key,
            client_cas: Vec::new(),
            min_version: TlsVersion::Tls12,
            reload_interval: RELOAD_INTERVAL,
        }
    }
}

/// A loaded TLS setup: the rustls config for the acceptor and the task that keeps its
/// certificate fresh.
pub struct Tls {
    /// For [`tokio_rustls::TlsAcceptor`].
    pub config: Arc<ServerConfig>,
    /// Run it (and abort it when the listener stops) to pick up renewals.
    pub reloader: Reloader,
}

/// Reads and checks every file; any problem is a startup error naming the key and the file.
pub fn load(opts: &TlsOptions) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let source = KeySource {
        cert: opts.certificate.clone(),
        key: opts.key.clone(),
        provider: Arc::clone(&provider),
    };
    let (key, fingerprint) = source.load()?;
    reload::log_loaded("serving", &key, &source);
    let resolver = Arc::new(ReloadingResolver::new(key));
    let versions: &[&rustls::SupportedProtocolVersion] = match opts.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)?;
    let builder = if opts.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = pem::client_roots(&opts.client_cas)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| rustls::Error::General(format!("client certificate verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&resolver) as _);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let reloader = Reloader::new(resolver, source, fingerprint, opts.reload_interval);
    Ok(Tls {
        config: Arc::new(config),
        reloader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TlsOptions::new(dir.path().join("nope.crt"), dir.path().join("nope.key"));
        let e = load(&opts).err().unwrap().to_string();
        assert!(e.starts_with("http.tls.certificate: cannot read"), "{e}");
        assert!(e.contains("nope.crt"), "{e}");
    }

    #[test]
    fn wrong_contents_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "").unwrap();
        let e = load(&TlsOptions::new(cert, key)).err().unwrap().to_string();
        assert!(e.starts_with("http.tls.certificate: "), "{e}");
        assert!(e.contains("no PEM CERTIFICATE block"), "{e}");
    }
}
