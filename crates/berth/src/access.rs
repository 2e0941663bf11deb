//! Wiring access control: from [`Settings`] to the API's options (the `berth_auth`
//! authenticator, trusted proxies).

use std::sync::Arc;

use berth_api::ApiOptions;
use berth_auth::ratelimit::LimitConfig;
use berth_auth::{
    AuthError, AuthOptions, Authenticator, ExternalTokenOptions, HtpasswdOptions, IssuerOptions,
};

use crate::config::{AuthSettings, Settings};

/// The API options for `s`; loads htpasswd, robots and keys (errors name the file and line).
pub fn api_options(s: &Settings) -> Result<ApiOptions, AuthError> {
    let auth = if s.auth.enabled() {
        let a = Authenticator::new(auth_options(&s.auth))?;
        log_mode(&s.auth);
        Some(Arc::new(a))
    } else {
        None
    };
    Ok(ApiOptions {
        auth,
        trusted_proxies: s.trusted_proxies.clone(),
        https: s.tls.is_some(),
        prefix: s.prefix.clone(),
    })
}

fn auth_options(a: &AuthSettings) -> AuthOptions {
    AuthOptions {
        htpasswd: a.htpasswd.as_ref().map(|h| HtpasswdOptions {
            realm: h.realm.clone(),
            path: h.path.clone(),
        }),
        robots: a.robots.clone(),
        token: a.token.as_ref().map(|t| ExternalTokenOptions {
            realm: t.realm.clone(),
            service: t.service.clone(),
            issuer: t.issuer.clone(),
            rootcertbundle: t.root_cert_bundle.clone(),
            autoredirect: t.auto_redirect,
        }),
        issuer: a.issuer.as_ref().map(|i| IssuerOptions {
            key: i.key.clone(),
            issuer: i.issuer.clone(),
            service: i.service.clone(),
            lifetime: i.lifetime,
            session_lifetime: i.session_lifetime,
            realm: i.realm.clone(),
        }),
        policy: a.policy.clone(),
        limits: LimitConfig {
            per_client: a.limits.client_failures,
            per_user: a.limits.user_failures,
            window: a.limits.window,
            ..LimitConfig::default()
        },
        ..AuthOptions::default()
    }
}

fn log_mode(a: &AuthSettings) {
    let mode = if a.issuer.is_some() {
        "bearer tokens from Berth's own /auth/token"
    } else if a.token.is_some() {
        "bearer tokens from an external token server"
    } else {
        "basic"
    };
    tracing::info!(
        mode,
        htpasswd = a.htpasswd.is_some(),
        robots = a.robots.is_some(),
        "authentication on"
    );
    if a.policy.is_none() {
        tracing::warn!("no policy section: every authenticated user may pull, push and delete everywhere (registry:2's behaviour); add `policy` to restrict access");
    }
}
