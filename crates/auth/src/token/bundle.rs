//! registry:2's `auth.token.rootcertbundle`: which external token signers to trust.
//!
//! A token names its signing key in one of two ways, as with registry:2:
//! * an `x5c` header: the signing certificate first, then intermediates. The chain must lead to
//!   a certificate of the bundle: each certificate is within its validity period, is signed by
//!   the next one (issuer name and signature checked with `x509-parser`'s ring-backed
//!   verification), every intermediate is a CA, and the last one is signed by (or is) a bundle
//!   certificate. The leaf's public key then verifies the token.
//! * a `kid` header: the libtrust key id or RFC 7638 thumbprint of the public key of a bundle
//!   certificate.
//!
//! Anything else (an unknown `kid`, a `jwk` header, no key hint at all) is refused.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::keys::PublicKey;
use super::TokenError;

/// Longest accepted chain (leaf plus intermediates).
const MAX_CHAIN: usize = 8;

/// The trusted certificates and their public keys by key id.
pub struct TrustBundle {
    roots: Vec<Vec<u8>>,
    keys: HashMap<String, PublicKey>,
}

impl TrustBundle {
    /// Parses a PEM bundle; it must hold at least one certificate.
    pub fn from_pem(pem: &[u8]) -> Result<TrustBundle, TokenError> {
        let mut roots = Vec::new();
        let mut keys = HashMap::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| TokenError::Key(format!("bad PEM: {e}")))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            let cert = parse(&block.contents)?;
            let key = public_key(cert.public_key())?;
            keys.insert(key.thumbprint.clone(), key.clone());
            keys.insert(key.kid.clone(), key);
            roots.push(block.contents.clone());
        }
        if roots.is_empty() {
            return Err(TokenError::Key(
                "the root certificate bundle holds no certificate".into(),
            ));
        }
        Ok(TrustBundle { roots, keys })
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the bundle is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The key of a bundle certificate by libtrust id or thumbprint.
    pub fn key_by_id(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// Verifies an `x5c` chain (base64 DER, leaf first) against the bundle; returns the leaf key.
    pub fn verify_chain(&self, x5c: &[String]) -> Result<PublicKey, TokenError> {
        let untrusted = |m: &str| TokenError::UntrustedKey(m.to_string());
        if x5c.is_empty() || x5c.len() > MAX_CHAIN {
            return Err(untrusted("x5c must hold 1 to 8 certificates"));
        }
        let ders = x5c
            .iter()
            .map(|c| {
                STANDARD
                    .decode(c)
                    .map_err(|_| untrusted("x5c is not base64"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let chain = ders
            .iter()
            .map(|d| parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = self
            .roots
            .iter()
            .map(|d| parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        for cert in &chain {
            if !cert.validity().is_valid() {
                return Err(untrusted(
                    "a certificate in x5c is expired or not yet valid",
                ));
            }
        }
        self.anchor(&chain, &roots)?;
        public_key(chain[0].public_key())
    }

    /// Walks leaf → intermediates in order until a bundle certificate vouches for one.
    fn anchor(
        &self,
        chain: &[X509Certificate<'_>],
        roots: &[X509Certificate<'_>],
    ) -> Result<(), TokenError> {
        for (i, cert) in chain.iter().enumerate() {
            if self.roots.iter().any(|r| r.as_slice() == cert.as_raw()) {
                return Ok(());
            }
            if roots
                .iter()
                .any(|r| signed_by(cert, r) && r.validity().is_valid())
            {
                return Ok(());
            }
            let Some(next) = chain.get(i + 1) else { break };
            if !next.is_ca() || !signed_by(cert, next) {
                return Err(TokenError::UntrustedKey(format!(
                    "x5c certificate {i} is not signed by the CA certificate after it"
                )));
            }
        }
        Err(TokenError::UntrustedKey(
            "x5c chain does not lead to a certificate of the root bundle".into(),
        ))
    }
}

fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, TokenError> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        _ => Err(TokenError::UntrustedKey("malformed certificate".into())),
    }
}

/// The verification key of a certificate's `SubjectPublicKeyInfo`.
pub fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, TokenError> {
    match spki.parsed() {
        Ok(ParsedKey::EC(point)) => PublicKey::ec(point.data(), spki.raw),
        Ok(ParsedKey::RSA(rsa)) => Ok(PublicKey::rsa(
            rsa.modulus,
            rsa.exponent,
            &spki.subject_public_key.data,
            spki.raw,
        )),
        _ => Err(TokenError::Key(
            "certificate key is neither EC (P-256/P-384) nor RSA".into(),
        )),
    }
}
