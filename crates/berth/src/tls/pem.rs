//! Reading the PEM files named by `http.tls`: the certificate chain, the private key and the
//! client CA bundles, with an error for each way they go wrong that names the key and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The certificate file holds no usable certificate.
    #[error("http.tls.certificate: {path}: {message}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file holds no usable private key.
    #[error("http.tls.key: {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Key and certificate do not belong together.
    #[error("http.tls: the private key {key} does not match the certificate {cert}: {message}")]
    Mismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Details.
        message: String,
    },
    /// A client CA bundle is unusable.
    #[error("http.tls.clientcas: {path}: {message}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("http.tls: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads one file named by config key `key`.
pub fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.into(),
        source,
    })
}

/// Builds the certified key from PEM bytes, checking that the key belongs to the leaf.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: (&Path, &Path),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = paths;
    let chain = certificates(cert_pem).map_err(|message| TlsError::Certificate {
        path: cert_path.into(),
        message,
    })?;
    let key = private_key(key_pem).map_err(|message| TlsError::Key {
        path: key_path.into(),
        message,
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_path.into(),
            message: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_path.into(),
        key: key_path.into(),
        message: e.to_string(),
    })?;
    Ok(certified)
}

/// Every CERTIFICATE block, leaf first; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(chain)
}

/// The first private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`).
fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(pem, b"ENCRYPTED") => {
            "the private key is encrypted; Berth needs it unencrypted \
             (`openssl pkey -in KEY -out KEY.plain`)"
                .into()
        }
        pem::Error::NoItemsFound => "no PEM private key found (expected PRIVATE KEY, \
             RSA PRIVATE KEY or EC PRIVATE KEY)"
            .into(),
        other => format!("invalid PEM: {other}"),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The trust anchors for client certificates: every certificate in every file.
pub fn client_roots(paths: &[PathBuf]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        let pem = read("http.tls.clientcas", path)?;
        let bad = |message: String| TlsError::ClientCa {
            path: path.clone(),
            message,
        };
        for der in certificates(&pem).map_err(bad)? {
            roots
                .add(der)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_say_what_is_wrong() {
        let e = private_key(b"").unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = private_key(encrypted).unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
        let e = private_key(b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.starts_with("invalid PEM"), "{e}");
    }

    #[test]
    fn certificate_errors_say_what_is_wrong() {
        assert!(certificates(b"hello")
            .unwrap_err()
            .contains("no PEM CERTIFICATE"));
        let e = client_roots(&[PathBuf::from("/nonexistent/ca.pem")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("http.tls.clientcas: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
