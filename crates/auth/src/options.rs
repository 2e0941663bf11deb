//! What the binary hands the auth crate: plain option structs, built from the config file.

use std::path::PathBuf;
use std::time::Duration;

use crate::policy::PolicyConfig;
use crate::ratelimit::LimitConfig;
use crate::reload::DEFAULT_POLL;

/// registry:2's `auth.htpasswd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtpasswdOptions {
    /// Basic realm.
    pub realm: String,
    /// The file (bcrypt entries only).
    pub path: PathBuf,
}

/// registry:2's `auth.token`: tokens issued by an external server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalTokenOptions {
    /// Where clients get tokens.
    pub realm: String,
    /// The `aud` tokens must carry.
    pub service: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// PEM certificates whose keys (or chains to which) may sign tokens.
    pub rootcertbundle: PathBuf,
    /// Build the realm from the request's scheme and host plus `/auth/token`.
    pub autoredirect: bool,
}

/// Berth's own token endpoint (`auth.issuer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerOptions {
    /// PEM private key (P-256 or RSA, PKCS#8 or PKCS#1); generated (P-256) when missing.
    pub key: PathBuf,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim and the `service` challenge parameter.
    pub service: String,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Longest session a login with `offline_token` starts (refresh tokens); zero: none.
    pub session_lifetime: Duration,
    /// Fixed realm URL; when absent, `<scheme>://<host>/auth/token` of each request.
    pub realm: Option<String>,
}

/// Everything the [`crate::Authenticator`] is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOptions {
    /// Users.
    pub htpasswd: Option<HtpasswdOptions>,
    /// Robot accounts file (created by `berth robot create` if missing).
    pub robots: Option<PathBuf>,
    /// External token server.
    pub token: Option<ExternalTokenOptions>,
    /// Berth's own token issuer.
    pub issuer: Option<IssuerOptions>,
    /// The policy; `None` keeps registry:2's behaviour (authenticated users may do everything).
    pub policy: Option<PolicyConfig>,
    /// Failed-login limits.
    pub limits: LimitConfig,
    /// How often htpasswd and robots files are checked for changes.
    pub reload_poll: Duration,
    /// How long a verified password is remembered.
    pub password_cache_ttl: Duration,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            htpasswd: None,
            robots: None,
            token: None,
            issuer: None,
            policy: None,
            limits: LimitConfig::default(),
            reload_poll: DEFAULT_POLL,
            password_cache_ttl: crate::password::DEFAULT_TTL,
        }
    }
}
