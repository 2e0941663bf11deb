//! Bearer tokens: Berth's own issuer and the verifier for its own and external tokens.
//!
//! Tokens follow Docker's registry token specification: a JWT whose `access` claim lists, per
//! resource, the granted actions, with `iss`, `sub`, `aud` (the service), `exp`, `nbf`, `iat` and
//! `jti`. Berth signs with ES256 (a P-256 key generated on first start) or RS256 (a key given in
//! the config); the `kid` header is the libtrust key id.
//!
//! Verification never trusts the token's header to choose how to verify it: the key is chosen
//! first (Berth's own key, or a bundle key named by `x5c`/`kid`), and only the algorithms of that
//! key's type are accepted. `alg: none` and `HS*` (which would turn a public key into an HMAC
//! secret) are refused before any signature check. Expiry and not-before are checked with a small
//! leeway, then issuer and audience.

mod bundle;
mod keys;
mod refresh;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_oci::RepoName;
use jsonwebtoken::{Header, Validation};
use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};

pub use bundle::TrustBundle;
pub use keys::{generate_p256_pem, libtrust_kid, pem_encode, PublicKey, SigningKey};
pub use refresh::{
    credential_fingerprint, Session, DEFAULT_SESSION_LIFETIME, REFRESH_AUDIENCE_SUFFIX,
};

use crate::scope::{Actions, Scope};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(10);

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's algorithm is not one the key may use (`none`, `HS256`, …).
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// No trusted key signed it.
    #[error("token signed by an untrusted key: {0}")]
    UntrustedKey(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Wrong `iss`.
    #[error("token issuer is not trusted")]
    Issuer,
    /// Wrong `aud`.
    #[error("token audience is not this service")]
    Audience,
    /// Validly signed, but its principal's credential changed or is gone.
    #[error("token was revoked: {0}")]
    Revoked(&'static str),
    /// A key could not be loaded or made.
    #[error("token key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name or `catalog`.
    pub name: String,
    /// Granted actions.
    #[serde(default)]
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// The claim entry for a granted scope.
    pub fn from_scope(s: &Scope) -> ResourceActions {
        match s {
            Scope::Repository(name, acts) => ResourceActions {
                kind: "repository".into(),
                name: name.to_string(),
                actions: acts.iter().map(|a| a.as_str().to_string()).collect(),
            },
            Scope::Catalog => ResourceActions {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
        }
    }
}

/// `aud` may be one string or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The claims Berth writes and reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the login name (`robot$x` for robots, empty for anonymous).
    #[serde(default)]
    pub sub: String,
    /// Audience: the registry service name.
    pub aud: Audience,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    #[serde(default)]
    pub nbf: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Token id.
    #[serde(default)]
    pub jti: String,
    /// Granted access.
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Berth: fingerprint of the subject's credential when the token was minted
    /// ([`credential_fingerprint`]); a changed password or rotated robot no longer matches.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cred: String,
}

/// What a verified token grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenAccess {
    /// The subject (login name; empty for anonymous).
    pub subject: String,
    /// Granted actions per repository.
    pub repositories: Vec<(RepoName, Actions)>,
    /// Whether `registry:catalog:*` was granted.
    pub catalog: bool,
    /// The credential fingerprint it was minted for (empty in external or older tokens).
    pub credential: String,
}

impl TokenAccess {
    fn from_claims(c: &Claims) -> TokenAccess {
        let mut t = TokenAccess {
            subject: c.sub.clone(),
            credential: c.cred.clone(),
            ..TokenAccess::default()
        };
        for ra in &c.access {
            let acts = Actions::parse_list(&ra.actions.join(","));
            match ra.kind.as_str() {
                "repository" => {
                    // Entries with invalid names grant nothing (they could never match anyway).
                    if let Ok(name) = RepoName::parse(&ra.name) {
                        t.repositories.push((name, acts));
                    }
                }
                "registry" if ra.name == "catalog" => {
                    t.catalog |= ra.actions.iter().any(|a| a == "*");
                }
                _ => {}
            }
        }
        t
    }

    /// The actions granted on `repo`.
    pub fn actions_on(&self, repo: &RepoName) -> Actions {
        self.repositories
            .iter()
            .filter(|(n, _)| n == repo)
            .fold(Actions::NONE, |acc, (_, a)| acc.union(*a))
    }
}

/// A freshly issued token and its response fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Issue time, RFC 3339.
    pub issued_at: String,
}

/// Berth's token issuer.
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    service: String,
    lifetime: Duration,
    session_lifetime: Duration,
}

impl TokenIssuer {
    /// An issuer signing with `key` as `issuer` for `service`.
    pub fn new(key: SigningKey, issuer: &str, service: &str, lifetime: Duration) -> TokenIssuer {
        TokenIssuer {
            key,
            issuer: issuer.to_string(),
            service: service.to_string(),
            lifetime,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
        }
    }

    /// The service (`aud`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The public key (to verify what this issuer signs).
    pub fn public_key(&self) -> &PublicKey {
        &self.key.public
    }

    /// Signs a token for `subject` granting exactly `granted`.
    pub fn issue(&self, subject: &str, granted: &[Scope]) -> Result<IssuedToken, TokenError> {
        self.issue_bound(subject, "", granted, None)
    }

    /// Signs a token for `subject`, bound to its `credential` fingerprint, granting exactly
    /// `granted`, expiring after the lifetime or at `not_after` (a session's end), if sooner.
    pub fn issue_bound(
        &self,
        subject: &str,
        credential: &str,
        granted: &[Scope],
        not_after: Option<u64>,
    ) -> Result<IssuedToken, TokenError> {
        let now = SystemTime::now();
        let iat = secs(now);
        let exp = not_after.map_or(u64::MAX, |n| n.max(iat));
        let exp = exp.min(iat + self.lifetime.as_secs());
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: Audience::One(self.service.clone()),
            exp,
            nbf: iat,
            iat,
            jti: random_id()?,
            access: granted.iter().map(ResourceActions::from_scope).collect(),
            cred: credential.to_string(),
        };
        let mut header = Header::new(self.key.algorithm);
        header.kid = Some(self.key.public.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: exp - iat,
            issued_at: humantime::format_rfc3339_seconds(now).to_string(),
        })
    }
}

/// Where the verifier gets its keys.
enum Trust {
    /// Only this key (Berth's own issuer).
    Own(PublicKey),
    /// Keys of this bundle, by `x5c` chain or `kid`.
    Bundle(TrustBundle),
}

/// Verifies bearer tokens.
pub struct TokenVerifier {
    trust: Trust,
    issuer: String,
    service: String,
}

impl TokenVerifier {
    /// A verifier for Berth's own tokens.
    pub fn own(issuer: &TokenIssuer) -> TokenVerifier {
        TokenVerifier {
            trust: Trust::Own(issuer.key.public.clone()),
            issuer: issuer.issuer.clone(),
            service: issuer.service.clone(),
        }
    }

    /// A verifier for an external issuer whose signing certificates chain to `bundle`.
    pub fn external(bundle: TrustBundle, issuer: &str, service: &str) -> TokenVerifier {
        TokenVerifier {
            trust: Trust::Bundle(bundle),
            issuer: issuer.to_string(),
            service: service.to_string(),
        }
    }

    /// Whether this verifies Berth's own tokens (not an external issuer's).
    pub fn is_own(&self) -> bool {
        matches!(self.trust, Trust::Own(_))
    }

    /// Verifies `token` completely and returns what it grants.
    pub fn verify(&self, token: &str) -> Result<TokenAccess, TokenError> {
        let claims: Claims = self.decode(token, &self.service, &["exp", "iss", "aud"])?;
        Ok(TokenAccess::from_claims(&claims))
    }

    /// Picks the key (never from the token's say-so alone), accepts only that key's own
    /// algorithms, then checks signature, `exp`/`nbf` with [`LEEWAY`], `iss`, `audience` and the
    /// `required` claims.
    fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        required: &[&str],
    ) -> Result<C, TokenError> {
        let header = RawHeader::parse(token)?;
        let key = self.key_for(&header)?;
        let alg = key
            .algorithms
            .iter()
            .find(|a| format!("{a:?}") == header.alg)
            .copied()
            .ok_or_else(|| TokenError::Algorithm(berth_oci::quoted(&header.alg)))?;
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(required);
        jsonwebtoken::decode::<C>(token, &key.decoding, &v)
            .map(|d| d.claims)
            .map_err(map_jwt_error)
    }

    fn key_for(&self, h: &RawHeader) -> Result<PublicKey, TokenError> {
        match &self.trust {
            Trust::Own(k) => match &h.kid {
                Some(kid) if kid != &k.kid => Err(TokenError::UntrustedKey(format!(
                    "unknown kid {}",
                    berth_oci::quoted(kid)
                ))),
                _ => Ok(k.clone()),
            },
            Trust::Bundle(b) => match (&h.x5c, &h.kid) {
                (Some(chain), _) => b.verify_chain(chain),
                (None, Some(kid)) => b.key_by_id(kid).cloned().ok_or_else(|| {
                    TokenError::UntrustedKey(format!("unknown kid {}", berth_oci::quoted(kid)))
                }),
                (None, None) => Err(TokenError::UntrustedKey(
                    "the token names no key (no x5c or kid header)".into(),
                )),
            },
        }
    }
}

/// The header fields read before choosing a key; parsed by hand so that algorithms
/// `jsonwebtoken` does not know (`none`) are reported as such.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    x5c: Option<Vec<String>>,
}

impl RawHeader {
    fn parse(token: &str) -> Result<RawHeader, TokenError> {
        let bad = |m: &str| TokenError::Malformed(m.to_string());
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("a JWT has three dot-separated parts"));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .map_err(|_| bad("header is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| bad("header is not a JSON object with alg"))
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => TokenError::Signature,
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidIssuer => TokenError::Issuer,
        K::InvalidAudience => TokenError::Audience,
        K::InvalidAlgorithm => TokenError::Algorithm("mismatch".into()),
        _ => TokenError::Malformed(e.to_string()),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_id() -> Result<String, TokenError> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| TokenError::Sign("no randomness".into()))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests;
