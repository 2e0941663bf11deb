//! Certificate rotation without a restart.
//!
//! The server config holds a [`ReloadingResolver`] instead of a fixed certificate: every
//! handshake takes the current `Arc<CertifiedKey>` from it. A [`Reloader`] task polls the
//! certificate and key files and swaps in a new pair once it has loaded and validated it.
//! Established connections (keep-alive included) are untouched: a TLS session keeps the key it
//! was negotiated with, and only new handshakes see the new certificate.
//!
//! Polling rather than inotify (`notify`): the usual renewals replace files by a symlink swap
//! (Kubernetes secret volumes used by cert-manager swap a `..data` link; certbot repoints
//! `live/*.pem` into `archive/`) or rewrite them in place, and inotify on the watched paths misses
//! some of these unless the watch is re-armed on every swap. Reading two small files every two
//! seconds sees every case through one code path and costs nothing measurable.
//!
//! The files are compared by a SHA-256 of their contents. A changed pair is loaded only after it
//! read the same on two consecutive polls, so a renewal caught between writing the certificate
//! and the key is not reported as broken. A pair that still fails (unparsable, mismatched) is
//! logged once and the old certificate stays in service until the files change again.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};

use super::der;
use super::pem::{self, TlsError};

/// Hands every handshake the current certificate; [`ReloadingResolver::swap`] replaces it.
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    /// Starts with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> ReloadingResolver {
        ReloadingResolver {
            current: RwLock::new(key),
        }
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = key;
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingResolver").finish_non_exhaustive()
    }
}

/// Where a certificate pair comes from.
#[derive(Clone)]
pub struct KeySource {
    /// `http.tls.certificate`.
    pub cert: PathBuf,
    /// `http.tls.key`.
    pub key: PathBuf,
    /// Parses the key.
    pub provider: Arc<CryptoProvider>,
}

/// SHA-256 over both files' contents.
type Fingerprint = [u8; 32];

/// One read of both files.
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
    fingerprint: Fingerprint,
}

impl KeySource {
    /// Reads both files.
    fn read(&self) -> Result<Snapshot, TlsError> {
        let cert = pem::read("http.tls.certificate", &self.cert)?;
        let key = pem::read("http.tls.key", &self.key)?;
        let mut h = Sha256::new();
        h.update((cert.len() as u64).to_be_bytes());
        h.update(&cert);
        h.update(&key);
        let fingerprint = h.finalize().into();
        Ok(Snapshot {
            cert,
            key,
            fingerprint,
        })
    }

    /// Reads and validates the pair.
    pub fn load(&self) -> Result<(Arc<CertifiedKey>, Fingerprint), TlsError> {
        let snap = self.read()?;
        let key = self.parse(&snap)?;
        Ok((key, snap.fingerprint))
    }

    fn parse(&self, snap: &Snapshot) -> Result<Arc<CertifiedKey>, TlsError> {
        let paths = (self.cert.as_path(), self.key.as_path());
        pem::certified_key(&snap.cert, &snap.key, paths, &self.provider).map(Arc::new)
    }
}

/// Logs which certificate is now served (serial, expiry, SHA-256 of the leaf).
pub fn log_loaded(what: &str, key: &CertifiedKey, source: &KeySource) {
    let Some(leaf) = key.cert.first() else {
        return;
    };
    let sha256 = hex::encode(Sha256::digest(leaf.as_ref()));
    let summary = der::summary(leaf.as_ref());
    let serial = summary.as_ref().map_or("?", |s| s.serial.as_str());
    let not_after = summary.as_ref().map_or("?", |s| s.not_after.as_str());
    tracing::info!(
        certificate = %source.cert.display(),
        serial,
        not_after,
        sha256,
        "{what} TLS certificate"
    );
    if summary.as_ref().is_some_and(der::CertSummary::expired) {
        tracing::warn!(
            certificate = %source.cert.display(),
            not_after,
            "the TLS certificate has expired; clients will refuse it"
        );
    }
}

/// What one poll decided.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The files are what is served (or what was rejected); nothing to do.
    Unchanged,
    /// The files changed; wait one more poll for them to settle.
    Settling,
    /// The files changed and read the same twice: load them.
    Load,
}

/// Polls the certificate and key files and swaps the served certificate when they change.
pub struct Reloader {
    resolver: Arc<ReloadingResolver>,
    source: KeySource,
    interval: Duration,
    served: Fingerprint,
    candidate: Option<Fingerprint>,
    rejected: Option<Fingerprint>,
    read_failing: bool,
}

impl Reloader {
    /// A reloader for `source`, whose pair `served` is in `resolver` now.
    pub fn new(
        resolver: Arc<ReloadingResolver>,
        source: KeySource,
        served: Fingerprint,
        interval: Duration,
    ) -> Reloader {
        Reloader {
            resolver,
            source,
            interval,
            served,
            candidate: None,
            rejected: None,
            read_failing: false,
        }
    }

    /// Polls forever; abort the task to stop it.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let source = self.source.clone();
            match tokio::task::spawn_blocking(move || source.read()).await {
                Ok(Ok(snap)) => self.observe(&snap),
                Ok(Err(e)) => self.read_failed(&e),
                Err(e) => tracing::warn!(error = %e, "TLS certificate poll failed"),
            }
        }
    }

    fn read_failed(&mut self, e: &TlsError) {
        if !self.read_failing {
            tracing::warn!(error = %e, "cannot read the TLS files; still serving the current certificate");
        }
        self.read_failing = true;
    }

    fn observe(&mut self, snap: &Snapshot) {
        if std::mem::take(&mut self.read_failing) {
            tracing::info!("the TLS files are readable again");
        }
        if self.step(snap.fingerprint) != Step::Load {
            return;
        }
        match self.source.parse(snap) {
            Ok(key) => {
                log_loaded("reloaded", &key, &self.source);
                self.resolver.swap(key);
                self.served = snap.fingerprint;
            }
            Err(e) => {
                tracing::error!(error = %e, "the new TLS certificate or key is unusable; still serving the previous certificate");
                self.rejected = Some(snap.fingerprint);
            }
        }
    }

    fn step(&mut self, seen: Fingerprint) -> Step {
        if seen == self.served || Some(seen) == self.rejected {
            self.candidate = None;
            return Step::Unchanged;
        }
        if self.candidate.replace(seen) == Some(seen) {
            self.candidate = None;
            Step::Load
        } else {
            Step::Settling
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloader() -> Reloader {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signer = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                // Any well-formed key works: step() never looks at it.
                test_key().into(),
            ))
            .unwrap();
        let key = Arc::new(CertifiedKey::new(vec![], signer));
        let source = KeySource {
            cert: "c".into(),
            key: "k".into(),
            provider,
        };
        Reloader::new(
            Arc::new(ReloadingResolver::new(key)),
            source,
            [0; 32],
            Duration::from_secs(2),
        )
    }

    /// A PKCS#8 P-256 key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    fn test_key() -> Vec<u8> {
        let pem = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfDhLyJGIGOr6kaxB\n\
rFJ+zZgWAHkoCPA8GpwWJqLIvqehRANCAAS69izCzZLNJS3R32FnwNwyCVrhxI0T\n\
MHeZK4waajK9xEZrdiIv6lNvQU5fIHpu4YF07bP0RvLDuExx9KuekSG/\n\
-----END PRIVATE KEY-----\n";
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .secret_pkcs8_der()
            .to_vec()
    }

    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_change_loads_after_it_settles() {
        let mut r = reloader();
        assert_eq!(r.step([0; 32]), Step::Unchanged);
        assert_eq!(r.step([1; 32]), Step::Settling);
        assert_eq!(r.step([2; 32]), Step::Settling, "still changing");
        assert_eq!(r.step([2; 32]), Step::Load);
    }

    #[test]
    fn a_revert_cancels_the_candidate() {
        let mut r = reloader();
        assert_eq!(r.step([1; 32]), Step::Settling);
        assert_eq!(r.step([0; 32]), Step::Unchanged);
        assert_eq!(r.step([1; 32]), Step::Settling, "starts settling again");
    }

    #[test]
    fn a_rejected_pair_is_not_retried_until_it_changes() {
        let mut r = reloader();
        r.rejected = Some([3; 32]);
        assert_eq!(r.step([3; 32]), Step::Unchanged);
        assert_eq!(r.step([3; 32]), Step::Unchanged);
        assert_eq!(r.step([4; 32]), Step::Settling);
        assert_eq!(r.step([4; 32]), Step::Load);
    }

    #[test]
    fn swap_changes_what_resolve_returns() {
        let r = reloader();
        let before = r.resolver.current();
        let signer = Arc::clone(&before.key);
        r.resolver.swap(Arc::new(CertifiedKey::new(vec![], signer)));
        assert!(!Arc::ptr_eq(&before, &r.resolver.current()));
    }
}
