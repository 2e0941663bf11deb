//! [`Authenticator`]: credentials in, a [`Caller`] out; callers and repositories in, a
//! [`Decision`] out. Everything the HTTP layer needs, with no HTTP in it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_oci::RepoName;

use crate::htpasswd::Htpasswd;
use crate::options::AuthOptions;
use crate::password::{Checked, PasswordVerifier};
use crate::policy::Policy;
use crate::principal::{Identity, Principal};
use crate::ratelimit::{FailureLimiter, KnownClients, LimitConfig, Reservation, KNOWN_CLIENT_TTL};
use crate::reload::{LoadError, Watched};
use crate::robots::{RobotCheck, Robots};
use crate::scope::{Actions, Scope};
use crate::token::{SigningKey, TokenAccess, TokenError, TokenIssuer, TokenVerifier, TrustBundle};

mod session;

pub use session::Minted;

/// Credentials as sent by the client.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Basic` user and password.
    Basic {
        /// Login name (`robot$x` for robots).
        user: String,
        /// Password or robot secret.
        password: String,
    },
    /// `Bearer` token.
    Bearer(String),
    /// An `Authorization` header that could not be read (unknown scheme, bad base64).
    Malformed,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
            Credentials::Malformed => f.write_str("Malformed"),
        }
    }
}

/// An authenticated (or anonymous) request's caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// What its bearer token grants, when it sent one.
    pub token: Option<TokenAccess>,
    /// True when this request checked a password that was not recently checked: a login.
    pub fresh_login: bool,
}

impl Caller {
    /// A caller without credentials.
    pub fn anonymous() -> Caller {
        Caller {
            principal: Principal::anonymous(),
            token: None,
            fresh_login: false,
        }
    }
}

/// Why authentication failed (the HTTP layer answers 401, or 429 for [`AuthFailure::RateLimited`]).
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user, wrong password, unknown or expired robot.
    BadCredentials(&'static str),
    /// A credential kind this configuration does not accept.
    NotAccepted(&'static str),
    /// A bearer token that failed verification.
    InvalidToken(TokenError),
    /// Too many recent failures from this client or for this user.
    RateLimited(Duration),
}

/// The answer to "may this caller do that?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 401 with a challenge: no credentials, or a token that lacks a scope the caller could get.
    Challenge {
        /// Add `error="insufficient_scope"` to a bearer challenge.
        insufficient_scope: bool,
    },
    /// 403: the credentials are valid but do not grant it.
    Deny,
}

/// Where clients get tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Realm {
    /// A fixed URL.
    Fixed(String),
    /// The request's own scheme and host plus this path.
    Auto(String),
}

/// How a 401 asks for credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic {
        /// Realm.
        realm: String,
    },
    /// `Bearer realm="…",service="…"`.
    Bearer {
        /// Token endpoint.
        realm: Realm,
        /// Service name.
        service: String,
    },
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// htpasswd or robots file.
    #[error(transparent)]
    File(#[from] LoadError),
    /// Keys or certificate bundle.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The policy.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// Contradicting options.
    #[error("{0}")]
    Config(String),
}

/// Authentication and authorization for one registry.
pub struct Authenticator {
    htpasswd: Option<Watched<Htpasswd>>,
    robots: Option<Watched<Robots>>,
    policy: Policy,
    issuer: Option<TokenIssuer>,
    verifier: Option<TokenVerifier>,
    own_tokens: bool,
    challenge: Challenge,
    passwords: PasswordVerifier,
    limits: LimitConfig,
    failures: FailureLimiter,
    known: KnownClients,
}

impl Authenticator {
    /// Loads files and keys and validates everything; errors name the file and line.
    pub fn new(opts: AuthOptions) -> Result<Authenticator, AuthError> {
        if opts.token.is_some() && opts.issuer.is_some() {
            return Err(AuthError::Config(
                "auth.token (external token server) and auth.issuer (Berth's own token endpoint) exclude each other".into(),
            ));
        }
        let poll = opts.reload_poll;
        let htpasswd = match &opts.htpasswd {
            Some(h) => Some(Watched::load(&h.path, poll, None, |t| {
                Htpasswd::parse(t).map_err(|e| e.to_string())
            })?),
            None => None,
        };
        let robots = match &opts.robots {
            Some(p) => Some(Watched::load(p, poll, Some(Robots::default()), |t| {
                Robots::parse(t).map_err(|e| e.to_string())
            })?),
            None => None,
        };
        let policy = match opts.policy.clone() {
            Some(p) => Policy::new(p)?,
            None => Policy::registry2_compatible(),
        };
        let (issuer, verifier, challenge) = tokens(&opts)?;
        Ok(Authenticator {
            htpasswd,
            robots,
            policy,
            own_tokens: issuer.is_some(),
            issuer,
            verifier,
            challenge,
            passwords: PasswordVerifier::new(
                opts.password_cache_ttl,
                crate::password::DEFAULT_CAPACITY,
            ),
            limits: opts.limits,
            failures: FailureLimiter::new(opts.limits.window, opts.limits.capacity),
            known: KnownClients::new(KNOWN_CLIENT_TTL, opts.limits.capacity),
        })
    }

    /// How 401 answers ask for credentials.
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Berth's own token issuer, when `auth.issuer` is configured.
    pub fn issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// Checks credentials. `client` is the client's address, for failed-login limits.
    pub async fn authenticate(
        &self,
        creds: &Credentials,
        client: &str,
    ) -> Result<Caller, AuthFailure> {
        match creds {
            Credentials::None => Ok(Caller::anonymous()),
            Credentials::Bearer(t) => self.bearer(t),
            Credentials::Basic { user, password } => self.basic(user, password, client).await,
            Credentials::Malformed => Err(AuthFailure::BadCredentials(
                "unreadable Authorization header",
            )),
        }
    }

    fn bearer(&self, token: &str) -> Result<Caller, AuthFailure> {
        let v = self
            .verifier
            .as_ref()
            .ok_or(AuthFailure::NotAccepted("bearer tokens are not enabled"))?;
        let access = v.verify(token).map_err(AuthFailure::InvalidToken)?;
        if self.own_tokens && !access.subject.is_empty() {
            self.still_bound(&access.subject, &access.credential)
                .map_err(AuthFailure::InvalidToken)?;
        }
        let principal = if self.own_tokens {
            self.principal_for_login(&access.subject)
        } else if access.subject.is_empty() {
            Principal::anonymous()
        } else {
            Principal::bare(Identity::User(access.subject.clone()))
        };
        Ok(Caller {
            principal,
            token: Some(access),
            fresh_login: false,
        })
    }

    /// A password or robot-secret login. Each check that does real work first reserves a slot
    /// on the per-address limit and, unless this address logged in as this user recently, on
    /// the user's global limit: a burst of concurrent guesses gets at most the limit's worth of
    /// checks, and guesses from elsewhere cannot lock a user out of where they work from.
    async fn basic(&self, user: &str, password: &str, client: &str) -> Result<Caller, AuthFailure> {
        let (client_key, user_key) = (format!("client:{client}"), format!("user:{user}"));
        let mut keys = vec![(client_key.as_str(), self.limits.per_client)];
        if !self.known.knows(user, client) {
            keys.push((user_key.as_str(), self.limits.per_user));
        }
        let admit = || {
            self.failures
                .reserve(&keys)
                .map_err(AuthFailure::RateLimited)
        };
        let result = match Identity::from_login(user) {
            Identity::Robot(name) => {
                let slot = admit()?;
                let r = self.robot_login(&name, password);
                slot.finish(r.is_err());
                r
            }
            _ => self.user_login(user, password, admit).await,
        };
        if result.as_ref().is_ok_and(|c| c.fresh_login) {
            self.known.note(user, client);
        }
        result
    }

    async fn user_login<'a>(
        &'a self,
        user: &str,
        password: &str,
        admit: impl FnOnce() -> Result<Reservation<'a>, AuthFailure>,
    ) -> Result<Caller, AuthFailure> {
        let Some(file) = &self.htpasswd else {
            admit()?.finish(true);
            return Err(AuthFailure::NotAccepted("no htpasswd file is configured"));
        };
        let users = file.get();
        let hash = users.hash(user);
        let known = hash.is_some();
        let (checked, slot) = self
            .passwords
            .check_admitted(user, password, hash, admit)
            .await?;
        if let Some(slot) = slot {
            slot.finish(!checked.ok());
        }
        if !checked.ok() {
            return Err(AuthFailure::BadCredentials(if known {
                "wrong password"
            } else {
                "unknown user"
            }));
        }
        Ok(Caller {
            principal: self
                .policy
                .enrich(Principal::bare(Identity::User(user.to_string()))),
            token: None,
            fresh_login: checked == Checked::Verified,
        })
    }

    fn robot_login(&self, name: &str, secret: &str) -> Result<Caller, AuthFailure> {
        let Some(file) = &self.robots else {
            return Err(AuthFailure::NotAccepted(
                "robot accounts are not configured",
            ));
        };
        let robots = file.get();
        match robots.check(name, secret, SystemTime::now()) {
            RobotCheck::Valid(grant) => {
                let seen = self.passwords.note_success(name, secret, "robot");
                let mut p = Principal::bare(Identity::Robot(name.to_string()));
                p.grants.push(grant);
                Ok(Caller {
                    principal: p,
                    token: None,
                    fresh_login: !seen,
                })
            }
            RobotCheck::Expired => Err(AuthFailure::BadCredentials("robot account expired")),
            RobotCheck::Rejected => {
                Err(AuthFailure::BadCredentials("unknown robot or wrong secret"))
            }
        }
    }

    /// The principal a login name (a token subject) stands for today.
    fn principal_for_login(&self, login: &str) -> Principal {
        if login.is_empty() {
            return Principal::anonymous();
        }
        match Identity::from_login(login) {
            Identity::Robot(name) => {
                let mut p = Principal::bare(Identity::Robot(name.clone()));
                let robots = self.robots.as_ref().map(|r| r.get());
                let robot = robots.as_ref().and_then(|r| r.get(&name).cloned());
                if let Some(r) = robot.filter(|r| !r.expired(SystemTime::now())) {
                    p.grants.push(r.grant());
                }
                p
            }
            other => self.policy.enrich(Principal::bare(other)),
        }
    }

    /// Whether `caller` may do every action of `need` on `repo`.
    pub fn decide(&self, caller: &Caller, repo: &RepoName, need: Actions) -> Decision {
        let policy = self.policy.actions(&caller.principal, repo);
        let has = match &caller.token {
            // Berth's own tokens also meet today's policy, so revoking a grant takes effect
            // at once rather than when the token expires.
            Some(t) if self.own_tokens => t.actions_on(repo).intersect(policy),
            Some(t) => t.actions_on(repo),
            None => policy,
        };
        if has.contains_all(need) {
            return Decision::Allow;
        }
        let token_could_grant =
            caller.token.is_some() && (!self.own_tokens || policy.contains_all(need));
        if caller.principal.is_anonymous() || token_could_grant {
            Decision::Challenge {
                insufficient_scope: caller.token.is_some(),
            }
        } else {
            Decision::Deny
        }
    }

    /// `GET /v2/`: any valid credentials.
    pub fn decide_base(&self, caller: &Caller) -> Decision {
        if caller.token.is_some() || !caller.principal.is_anonymous() {
            Decision::Allow
        } else {
            Decision::Challenge {
                insufficient_scope: false,
            }
        }
    }

    /// `GET /v2/_catalog`: authenticated callers (with tokens: a `registry:catalog:*` grant).
    pub fn decide_catalog(&self, caller: &Caller) -> Decision {
        match &caller.token {
            Some(t) if t.catalog => Decision::Allow,
            Some(_) => Decision::Challenge {
                insufficient_scope: true,
            },
            None if caller.principal.is_anonymous() => Decision::Challenge {
                insufficient_scope: false,
            },
            None => Decision::Allow,
        }
    }

    /// Whether `repo` shows in `caller`'s catalog: the repositories it may pull (all of them
    /// for externally issued tokens, whose issuer already decided on `registry:catalog:*`).
    pub fn lists(&self, caller: &Caller, repo: &RepoName) -> bool {
        if caller.token.is_some() && !self.own_tokens {
            return true;
        }
        self.policy
            .allows(&caller.principal, repo, crate::scope::Action::Pull)
    }

    /// The part of `requested` the policy grants `caller` (for the token endpoint).
    pub fn grant(&self, caller: &Caller, requested: &[Scope]) -> Vec<Scope> {
        requested
            .iter()
            .filter_map(|s| match s {
                Scope::Repository(name, want) => {
                    let got = want.intersect(self.policy.actions(&caller.principal, name));
                    (!got.is_empty()).then(|| Scope::Repository(name.clone(), got))
                }
                Scope::Catalog => (!caller.principal.is_anonymous()).then_some(Scope::Catalog),
            })
            .collect()
    }
}

type TokenParts = (Option<TokenIssuer>, Option<TokenVerifier>, Challenge);

fn tokens(opts: &AuthOptions) -> Result<TokenParts, AuthError> {
    if let Some(i) = &opts.issuer {
        let key = SigningKey::load_or_generate(&i.key)?;
        let issuer = TokenIssuer::new(key, &i.issuer, &i.service, i.lifetime)
            .with_session_lifetime(i.session_lifetime);
        let verifier = TokenVerifier::own(&issuer);
        let realm = i
            .realm
            .clone()
            .map_or_else(|| Realm::Auto(crate::TOKEN_PATH.into()), Realm::Fixed);
        let service = i.service.clone();
        return Ok((
            Some(issuer),
            Some(verifier),
            Challenge::Bearer { realm, service },
        ));
    }
    if let Some(t) = &opts.token {
        let pem = std::fs::read(&t.rootcertbundle).map_err(|e| {
            AuthError::Config(format!(
                "cannot read auth.token.rootcertbundle {}: {e}",
                t.rootcertbundle.display()
            ))
        })?;
        let bundle = TrustBundle::from_pem(&pem)?;
        let verifier = TokenVerifier::external(bundle, &t.issuer, &t.service);
        let realm = if t.autoredirect {
            Realm::Auto(crate::TOKEN_PATH.into())
        } else {
            Realm::Fixed(t.realm.clone())
        };
        let service = t.service.clone();
        return Ok((None, Some(verifier), Challenge::Bearer { realm, service }));
    }
    let realm = opts
        .htpasswd
        .as_ref()
        .map_or_else(|| "berth".to_string(), |h| h.realm.clone());
    Ok((None, None, Challenge::Basic { realm }))
}

/// Shared handle.
pub type SharedAuthenticator = Arc<Authenticator>;

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
