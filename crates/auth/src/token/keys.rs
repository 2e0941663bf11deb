//! Public and private keys for tokens: loading, generating, key ids.
//!
//! Two key-id formats identify a public key in a token's `kid` header:
//! * Docker's libtrust format (registry:2 up to 2.8, Docker's token servers): the SHA-256 of the
//!   DER `SubjectPublicKeyInfo`, truncated to 240 bits, base32, in twelve `:`-separated groups of
//!   four characters;
//! * the RFC 7638 JWK thumbprint (Distribution 3).
//!
//! Berth's own tokens carry the libtrust form; verification accepts either.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest as _, Sha256};

use super::TokenError;

/// DER prefix of a P-256 `SubjectPublicKeyInfo` (id-ecPublicKey, prime256v1), before the point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER `AlgorithmIdentifier` for rsaEncryption with NULL parameters.
const RSA_ALG_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// A public key that can verify token signatures.
#[derive(Clone)]
pub struct PublicKey {
    /// The algorithms a signature by this key may claim (by key type, never HMAC or `none`).
    pub algorithms: Vec<Algorithm>,
    /// The verification key.
    pub decoding: DecodingKey,
    /// libtrust key id.
    pub kid: String,
    /// RFC 7638 thumbprint.
    pub thumbprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}, {:?})", self.kid, self.algorithms)
    }
}

impl PublicKey {
    /// An EC key from its uncompressed point (P-256 or P-384, told apart by length).
    pub fn ec(point: &[u8], spki_der: &[u8]) -> Result<PublicKey, TokenError> {
        let (alg, crv, coord) = match point.len() {
            65 => (Algorithm::ES256, "P-256", 32),
            97 => (Algorithm::ES384, "P-384", 48),
            n => {
                return Err(TokenError::Key(format!(
                    "unsupported EC public key ({n} bytes)"
                )))
            }
        };
        if point[0] != 4 {
            return Err(TokenError::Key(
                "compressed EC points are not supported".into(),
            ));
        }
        let (x, y) = point[1..].split_at(coord);
        let jwk = format!(
            r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(x),
            URL_SAFE_NO_PAD.encode(y)
        );
        Ok(PublicKey {
            algorithms: vec![alg],
            decoding: DecodingKey::from_ec_der(point),
            kid: libtrust_kid(spki_der),
            thumbprint: thumbprint(&jwk),
        })
    }

    /// An RSA key from its modulus and exponent and its PKCS#1 `RSAPublicKey` DER.
    pub fn rsa(modulus: &[u8], exponent: &[u8], pkcs1_der: &[u8], spki_der: &[u8]) -> PublicKey {
        let strip = |b: &[u8]| -> Vec<u8> {
            let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[start..].to_vec()
        };
        let jwk = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(strip(exponent)),
            URL_SAFE_NO_PAD.encode(strip(modulus))
        );
        PublicKey {
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            decoding: DecodingKey::from_rsa_der(pkcs1_der),
            kid: libtrust_kid(spki_der),
            thumbprint: thumbprint(&jwk),
        }
    }
}

/// Berth's own signing key (ES256 or RS256) with its public half.
pub struct SigningKey {
    /// `ES256` or `RS256`.
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    /// The public half.
    pub public: PublicKey,
}

impl SigningKey {
    /// Loads the PEM key at `path`, or, when the file does not exist, generates a P-256 key and
    /// writes it there (mode 0600, never overwriting an existing file).
    pub fn load_or_generate(path: &Path) -> Result<SigningKey, TokenError> {
        match std::fs::read(path) {
            Ok(pem) => SigningKey::from_pem(&pem)
                .map_err(|e| TokenError::Key(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_p256_pem()?;
                write_new(path, pem.as_bytes()).map_err(|e| {
                    TokenError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), "generated a new ES256 token signing key");
                SigningKey::from_pem(pem.as_bytes())
            }
            Err(e) => Err(TokenError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Parses a PKCS#8 (`PRIVATE KEY`: P-256 or RSA) or PKCS#1 (`RSA PRIVATE KEY`) PEM key.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, TokenError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|_| TokenError::Key("not a PEM file".into()))?;
        let der = block.contents.as_slice();
        match block.label.as_str() {
            "PRIVATE KEY" => {
                let rng = SystemRandom::new();
                if let Ok(kp) =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                {
                    return ec_key(der, kp.public_key().as_ref());
                }
                let kp = RsaKeyPair::from_pkcs8(der).map_err(|e| {
                    TokenError::Key(format!("PKCS#8 key is neither P-256 nor RSA ({e})"))
                })?;
                rsa_key(pem, &kp)
            }
            "RSA PRIVATE KEY" => {
                let kp = RsaKeyPair::from_der(der)
                    .map_err(|e| TokenError::Key(format!("bad RSA key: {e}")))?;
                rsa_key(pem, &kp)
            }
            "EC PRIVATE KEY" => Err(TokenError::Key(
                "SEC1 EC keys are not supported; convert with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            )),
            other => Err(TokenError::Key(format!("unsupported PEM block {other:?}"))),
        }
    }

    /// The encoding key for `jsonwebtoken`.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}

fn ec_key(pkcs8: &[u8], point: &[u8]) -> Result<SigningKey, TokenError> {
    let spki = [P256_SPKI_PREFIX.as_slice(), point].concat();
    Ok(SigningKey {
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8),
        public: PublicKey::ec(point, &spki)?,
    })
}

fn rsa_key(pem: &[u8], kp: &RsaKeyPair) -> Result<SigningKey, TokenError> {
    if kp.public().modulus_len() < 256 {
        return Err(TokenError::Key("RSA keys need at least 2048 bits".into()));
    }
    let pkcs1 = kp.public().as_ref();
    let bits = der_tlv(0x03, &[&[0u8][..], pkcs1].concat());
    let spki = der_tlv(0x30, &[&RSA_ALG_ID[..], &bits].concat());
    let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public());
    let encoding =
        EncodingKey::from_rsa_pem(pem).map_err(|e| TokenError::Key(format!("bad RSA key: {e}")))?;
    Ok(SigningKey {
        algorithm: Algorithm::RS256,
        encoding,
        public: PublicKey::rsa(&parts.n, &parts.e, pkcs1, &spki),
    })
}

/// A new P-256 key as a PKCS#8 PEM.
pub fn generate_p256_pem() -> Result<String, TokenError> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| TokenError::Key("cannot generate a key".into()))?;
    Ok(pem_encode("PRIVATE KEY", doc.as_ref()))
}

/// PEM armour around DER bytes.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// One DER TLV (lengths up to 64 KiB).
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![tag];
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// Docker libtrust key id of a DER `SubjectPublicKeyInfo`.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let b32 = base32(&hash[..30]);
    let groups: Vec<&str> = (0..b32.len() / 4).map(|i| &b32[i * 4..i * 4 + 4]).collect();
    groups.join(":")
}

/// RFC 7638 thumbprint of a canonical JWK JSON string.
fn thumbprint(canonical_jwk: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_jwk.as_bytes()))
}

/// RFC 4648 base32 (standard alphabet) without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (a test-only key).
    pub(crate) const RSA_PEM: &str = include_str!("testdata/rsa2048.pem");

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn libtrust_kid_shape() {
        let kid = libtrust_kid(b"anything");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert_eq!(kid.split(':').count(), 12);
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.pem");
        let a = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(a.algorithm, Algorithm::ES256);
        let b = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(a.public.kid, b.public.kid, "the persisted key is reused");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rsa_keys_load() {
        let k = SigningKey::from_pem(RSA_PEM.as_bytes()).unwrap();
        assert_eq!(k.algorithm, Algorithm::RS256);
        assert!(k.public.algorithms.contains(&Algorithm::RS256));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SigningKey::from_pem(b"junk").is_err());
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let e = SigningKey::from_pem(sec1.as_bytes()).err().unwrap();
        assert!(e.to_string().contains("pkcs8"), "{e}");
        let cert = pem_encode("CERTIFICATE", b"x");
        assert!(SigningKey::from_pem(cert.as_bytes()).is_err());
    }
}
