//! Refresh tokens: the OAuth2 "offline" session that a password login may start.
//!
//! A refresh token is a JWT signed with the issuer's key, but it is not an access token and
//! cannot be used as one: its audience is the service name with [`REFRESH_AUDIENCE_SUFFIX`]
//! appended (so the access-token verifier, and every older Berth, refuses it), it carries no
//! `access` claim, and its `typ` claim is `refresh`. Its claims bind it to the principal:
//!
//! * `sub`: the login name (`robot$x` for robots);
//! * `cred`: a fingerprint of the principal's stored credential (the htpasswd hash, the robot's
//!   secret hash): a changed password, a removed user, a rotated or deleted robot no longer
//!   matches, so every session of that principal ends at once, on every replica;
//! * `auth_time`: when the password was checked; `exp` is `auth_time` plus the session
//!   lifetime and is never extended: an access token minted from the session expires at the
//!   latest with it, and refreshing again does not start a new session.

use std::time::{Duration, SystemTime};

use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{random_id, secs, Audience, TokenError, TokenIssuer, TokenVerifier};

/// Appended to the service name to form a refresh token's audience.
pub const REFRESH_AUDIENCE_SUFFIX: &str = "#refresh";

/// The `typ` claim of refresh tokens.
const REFRESH_TYP: &str = "refresh";

/// Default longest session a login can start (`auth.issuer.sessionlifetime`).
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The claims of a refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    #[serde(default)]
    nbf: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    typ: String,
    #[serde(default)]
    auth_time: u64,
    #[serde(default)]
    cred: String,
}

/// A verified refresh token: whose session, since when, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The login name.
    pub subject: String,
    /// The credential fingerprint the session was started with.
    pub credential: String,
    /// When the password (or robot secret) was checked, seconds since the epoch.
    pub auth_time: u64,
    /// When the session ends, seconds since the epoch.
    pub expires: u64,
    /// The refresh token's id, for the audit log.
    pub id: String,
}

/// The fingerprint of a principal's stored credential (`stored`: the htpasswd hash or the
/// robot's secret hash) that tokens are bound to. Not a secret: it is a hash of a hash.
pub fn credential_fingerprint(login: &str, stored: &str) -> String {
    let mut h = Sha256::new();
    for part in ["berth-credential-v1", login, stored] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

impl TokenIssuer {
    /// The longest session a login can start; zero when refresh tokens are off.
    pub fn session_lifetime(&self) -> Duration {
        self.session_lifetime
    }

    /// Sets the longest session (zero turns refresh tokens off).
    pub fn with_session_lifetime(mut self, lifetime: Duration) -> TokenIssuer {
        self.session_lifetime = lifetime;
        self
    }

    /// Signs a refresh token for `subject`, whose credential is `credential`, starting its
    /// session now. `None` when sessions are switched off.
    pub fn issue_refresh(
        &self,
        subject: &str,
        credential: &str,
    ) -> Result<Option<String>, TokenError> {
        if self.session_lifetime.is_zero() {
            return Ok(None);
        }
        let now = secs(SystemTime::now());
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: Audience::One(format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.service)),
            exp: now + self.session_lifetime.as_secs(),
            nbf: now,
            iat: now,
            jti: random_id()?,
            typ: REFRESH_TYP.into(),
            auth_time: now,
            cred: credential.to_string(),
        };
        let mut header = Header::new(self.key.algorithm);
        header.kid = Some(self.key.public.kid.clone());
        jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .map(Some)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }
}

impl TokenVerifier {
    /// Verifies a refresh token signed by this issuer (signature, expiry, issuer, the refresh
    /// audience and type). Whether its principal still exists is the caller's check.
    pub fn verify_refresh(&self, token: &str) -> Result<Session, TokenError> {
        if !self.is_own() {
            return Err(TokenError::UntrustedKey(
                "refresh tokens are only issued by Berth's own token endpoint".into(),
            ));
        }
        let audience = format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.service);
        let c: RefreshClaims = self.decode(token, &audience, &["exp", "iss", "aud", "sub"])?;
        if c.typ != REFRESH_TYP || c.sub.is_empty() {
            return Err(TokenError::Malformed("not a refresh token".into()));
        }
        Ok(Session {
            subject: c.sub,
            credential: c.cred,
            auth_time: c.auth_time,
            expires: c.exp,
            id: c.jti,
        })
    }
}
