//! What may mint a token, and what a token stays bound to.
//!
//! Only a login mints tokens: basic credentials (a user's password, a robot's secret) or a
//! refresh token from an earlier login with `offline_token`. An access token never mints
//! another (the token endpoint refuses bearer credentials), so a narrow token cannot be
//! widened and a session cannot be stretched past its end by exchanging tokens.
//!
//! Every token Berth issues for a user or robot carries the fingerprint of that principal's
//! stored credential ([`credential_fingerprint`]), checked on every use against the htpasswd
//! and robots files as they are now: removing a user, changing a password, rotating or
//! deleting a robot ends its refresh tokens and access tokens at once.

use std::time::SystemTime;

use crate::principal::Identity;
use crate::scope::Scope;
use crate::token::{credential_fingerprint, IssuedToken, Session, TokenError};

use super::{AuthFailure, Authenticator, Caller};

/// What the token endpoint hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minted {
    /// The access token.
    pub access: IssuedToken,
    /// A refresh token, when a login asked for offline access.
    pub refresh: Option<String>,
    /// What the access token grants (the requested scopes the policy allows).
    pub granted: Vec<Scope>,
}

impl Authenticator {
    /// The fingerprint of `login`'s credential as the files hold it now; `None` when the user
    /// or robot no longer exists (or the robot has expired).
    pub fn credential(&self, login: &str) -> Option<String> {
        match Identity::from_login(login) {
            Identity::Robot(name) => {
                let robots = self.robots.as_ref()?.get();
                let robot = robots.get(&name)?;
                (!robot.expired(SystemTime::now()))
                    .then(|| credential_fingerprint(login, &robot.secret_sha256))
            }
            _ => {
                let users = self.htpasswd.as_ref()?.get();
                users.hash(login).map(|h| credential_fingerprint(login, h))
            }
        }
    }

    /// Whether a token for `subject` minted with `credential` is still good: the principal
    /// exists, and (when the token names one) its credential is unchanged.
    pub(super) fn still_bound(&self, subject: &str, credential: &str) -> Result<(), TokenError> {
        let Some(now) = self.credential(subject) else {
            return Err(TokenError::Revoked("the account no longer exists"));
        };
        if !credential.is_empty() && now != credential {
            return Err(TokenError::Revoked(
                "the password or secret changed since the login",
            ));
        }
        Ok(())
    }

    /// Verifies a refresh token and re-checks its principal against today's files.
    pub fn refresh(&self, token: &str) -> Result<(Caller, Session), AuthFailure> {
        let verifier = self
            .verifier
            .as_ref()
            .filter(|_| self.own_tokens)
            .ok_or(AuthFailure::NotAccepted("refresh tokens are not enabled"))?;
        let session = verifier
            .verify_refresh(token)
            .map_err(AuthFailure::InvalidToken)?;
        if session.credential.is_empty() {
            return Err(AuthFailure::InvalidToken(TokenError::Revoked(
                "the refresh token is bound to no credential",
            )));
        }
        self.still_bound(&session.subject, &session.credential)
            .map_err(AuthFailure::InvalidToken)?;
        let caller = Caller {
            principal: self.principal_for_login(&session.subject),
            token: None,
            fresh_login: false,
        };
        Ok((caller, session))
    }

    /// The subject of a refresh token that is validly signed and unexpired, whether or not it
    /// is still bound to its principal: who a refused refresh was for, for the audit log.
    pub fn refresh_subject(&self, token: &str) -> Option<String> {
        let verifier = self.verifier.as_ref().filter(|_| self.own_tokens)?;
        verifier.verify_refresh(token).ok().map(|s| s.subject)
    }

    /// Mints an access token for `caller`, who logged in with basic credentials or, with
    /// `session`, presented a refresh token; plus a refresh token when a login asks for
    /// `offline` access. The access token grants the requested scopes the policy allows and
    /// ends with the session at the latest.
    pub fn mint(
        &self,
        caller: &Caller,
        session: Option<&Session>,
        requested: &[Scope],
        offline: bool,
    ) -> Result<Minted, TokenError> {
        let issuer = self
            .issuer
            .as_ref()
            .ok_or_else(|| TokenError::Sign("Berth's token endpoint is not configured".into()))?;
        let granted = self.grant(caller, requested);
        let anonymous = caller.principal.is_anonymous();
        let subject = if anonymous {
            String::new()
        } else {
            caller.principal.to_string()
        };
        let credential = match session {
            Some(s) => s.credential.clone(),
            None if anonymous => String::new(),
            None => self.credential(&subject).unwrap_or_default(),
        };
        let access =
            issuer.issue_bound(&subject, &credential, &granted, session.map(|s| s.expires))?;
        let refresh = if offline && session.is_none() && !anonymous && !credential.is_empty() {
            issuer.issue_refresh(&subject, &credential)?
        } else {
            None
        };
        Ok(Minted {
            access,
            refresh,
            granted,
        })
    }
}
