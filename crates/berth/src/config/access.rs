//! The `auth` and `policy` sections and `http.trustedproxies`: from the file to checked settings.
//!
//! The policy is checked here with `berth_auth`'s own validation (patterns, actions, groups), so
//! a mistake fails at startup with the key path rather than as a surprising 403 later.

use std::path::PathBuf;
use std::time::Duration;

use berth_auth::policy::{AnonymousConfig, RuleConfig};
use berth_auth::{Action, Policy, PolicyConfig, RepoPattern};

use super::de::Text;
use super::file::{self, ConfigFile};
use super::settings::*;
use super::validate::{opt_url, path, positive, small};
use super::ConfigError;

type R<T> = Result<T, ConfigError>;

/// File name of the generated token signing key, next to the embedded database.
const DEFAULT_KEY: &str = "token-signing-key.pem";

/// `auth` plus `policy`.
pub fn auth(f: &ConfigFile, db: &DatabaseSettings) -> R<AuthSettings> {
    let a = &f.auth;
    if a.htpasswd.is_some() && a.token.is_some() {
        return Err(ConfigError::value(
            "auth",
            "configure one of htpasswd or token, not both",
        ));
    }
    if a.issuer.is_some() && a.token.is_some() {
        return Err(ConfigError::value(
            "auth.issuer",
            "Berth's own token endpoint and an external token server (auth.token) exclude each other",
        ));
    }
    let htpasswd = a
        .htpasswd
        .as_ref()
        .map(|h| {
            Ok(HtpasswdSettings {
                realm: h
                    .realm
                    .as_ref()
                    .map_or("Berth Registry", Text::as_str)
                    .to_owned(),
                path: path("auth.htpasswd.path", h.path.as_ref())?,
            })
        })
        .transpose()?;
    Ok(AuthSettings {
        htpasswd,
        token: a.token.as_ref().map(token).transpose()?,
        issuer: a.issuer.as_ref().map(|i| issuer(i, db)).transpose()?,
        robots: a
            .robots
            .as_ref()
            .map(|r| path("auth.robots.path", r.path.as_ref()))
            .transpose()?,
        limits: limits(&a.limits)?,
        policy: f.policy.as_ref().map(policy).transpose()?,
    })
}

fn token(t: &file::Token) -> R<TokenSettings> {
    let req = |key: &str, v: &Option<Text>| {
        v.as_ref()
            .map(|t| t.0.clone())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConfigError::value(key, "is required"))
    };
    Ok(TokenSettings {
        realm: req("auth.token.realm", &t.realm)?,
        service: req("auth.token.service", &t.service)?,
        issuer: req("auth.token.issuer", &t.issuer)?,
        root_cert_bundle: path("auth.token.rootcertbundle", t.rootcertbundle.as_ref())?,
        auto_redirect: t.autoredirect.is_some_and(|f| f.0),
    })
}

fn issuer(i: &file::Issuer, db: &DatabaseSettings) -> R<IssuerSettings> {
    let key = match (&i.key, db) {
        (Some(k), _) => path("auth.issuer.key", Some(k))?,
        (None, DatabaseSettings::Sqlite { path }) => path
            .parent()
            .map_or_else(|| PathBuf::from(DEFAULT_KEY), |d| d.join(DEFAULT_KEY)),
        (None, DatabaseSettings::Postgres { .. }) => return Err(ConfigError::value(
            "auth.issuer.key",
            "is required with a PostgreSQL database (every replica must sign with the same key)",
        )),
    };
    let text = |v: &Option<Text>, default: &str| {
        v.as_ref()
            .map(|t| t.0.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let lifetime = positive(
        "auth.issuer.lifetime",
        i.lifetime.map_or(Duration::from_secs(300), |d| d.0),
    )?;
    if lifetime > Duration::from_secs(24 * 3600) {
        return Err(ConfigError::value(
            "auth.issuer.lifetime",
            "tokens are meant to be short-lived; use at most 24h",
        ));
    }
    let session_lifetime = session_lifetime(i, lifetime)?;
    Ok(IssuerSettings {
        key,
        issuer: text(&i.issuer, "berth"),
        service: text(&i.service, "berth-registry"),
        lifetime,
        session_lifetime,
        realm: opt_url("auth.issuer.realm", i.realm.as_ref())?,
    })
}

/// `auth.issuer.sessionlifetime`: zero (no refresh tokens), or between the token lifetime and
/// 366 days.
fn session_lifetime(i: &file::Issuer, lifetime: Duration) -> R<Duration> {
    const KEY: &str = "auth.issuer.sessionlifetime";
    let d = i
        .sessionlifetime
        .map_or(berth_auth::token::DEFAULT_SESSION_LIFETIME, |d| d.0);
    if d.is_zero() {
        return Ok(d);
    }
    if d < lifetime {
        return Err(ConfigError::value(
            KEY,
            "must be at least auth.issuer.lifetime (or 0s to turn refresh tokens off)",
        ));
    }
    if d > Duration::from_secs(366 * 24 * 3600) {
        return Err(ConfigError::value(KEY, "use at most 8784h (366 days)"));
    }
    Ok(d)
}

fn limits(l: &file::LoginLimits) -> R<LoginLimitSettings> {
    let d = LoginLimitSettings::default();
    let count = |key: &str, v: Option<super::de::Count>, default: u32| -> R<u32> {
        let n = v.map_or(Ok(default), |c| small(key, c.0))?;
        if n == 0 {
            return Err(ConfigError::value(key, "must be at least 1"));
        }
        Ok(n)
    };
    Ok(LoginLimitSettings {
        client_failures: count(
            "auth.limits.clientfailures",
            l.clientfailures,
            d.client_failures,
        )?,
        user_failures: count("auth.limits.userfailures", l.userfailures, d.user_failures)?,
        window: positive("auth.limits.window", l.window.map_or(d.window, |w| w.0))?,
    })
}

fn policy(p: &file::Policy) -> R<PolicyConfig> {
    let strings = |v: &[Text]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    let cfg = PolicyConfig {
        admins: strings(&p.admins),
        groups: p
            .groups
            .iter()
            .map(|(g, m)| (g.clone(), strings(m)))
            .collect(),
        anonymous: AnonymousConfig {
            pull: patterns("policy.anonymous.pull", &p.anonymous.pull)?,
        },
        rules: p
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(i, r))
            .collect::<R<_>>()?,
    };
    Policy::new(cfg.clone()).map_err(|e| ConfigError::value("policy", e.to_string()))?;
    Ok(cfg)
}

fn rule(i: usize, r: &file::Rule) -> R<RuleConfig> {
    let key = |k: &str| format!("policy.rules[{i}].{k}");
    let actions = r
        .actions
        .iter()
        .map(|a| {
            Action::parse(a.as_str()).ok_or_else(|| {
                ConfigError::value(
                    &key("actions"),
                    format!("{:?} is not pull, push or delete", a.0),
                )
            })
        })
        .collect::<R<_>>()?;
    let strings = |v: &[Text]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    Ok(RuleConfig {
        users: strings(&r.users),
        groups: strings(&r.groups),
        robots: strings(&r.robots),
        repositories: patterns(&key("repositories"), &r.repositories)?,
        actions,
    })
}

fn patterns(key: &str, v: &[Text]) -> R<Vec<RepoPattern>> {
    v.iter()
        .map(|p| RepoPattern::parse(p.as_str()).map_err(|e| ConfigError::value(key, e.to_string())))
        .collect()
}

/// `http.trustedproxies`.
pub fn trusted_proxies(h: &file::Http) -> R<Vec<berth_api::IpNet>> {
    h.trustedproxies
        .iter()
        .map(|t| {
            t.as_str()
                .parse()
                .map_err(|e: String| ConfigError::value("http.trustedproxies", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{from_text, Loaded};
    use super::*;

    fn load_str(yaml: &str) -> Result<Loaded, ConfigError> {
        from_text(yaml, Vec::new())
    }

    fn load(yaml: &str) -> Result<AuthSettings, ConfigError> {
        load_str(yaml).map(|l| l.settings.auth)
    }

    #[test]
    fn reads_berth_auth_sections_and_policy() {
        let a = load(
            "storage:\n  filesystem:\n    rootdirectory: /data\nauth:\n  htpasswd:\n    realm: R\n    path: /auth/htpasswd\n  issuer:\n    service: reg.example.com\n    lifetime: 2m\n  robots:\n    path: /auth/robots.yml\n  limits:\n    clientfailures: 3\n    window: 30s\npolicy:\n  admins: [root]\n  groups:\n    team-a: [alice]\n  anonymous:\n    pull: [\"public/**\"]\n  rules:\n    - groups: [team-a]\n      repositories: [\"team-a/**\"]\n      actions: [pull, push]\n",
        )
        .unwrap();
        let i = a.issuer.unwrap();
        assert_eq!(i.key, PathBuf::from("/data/token-signing-key.pem"));
        assert_eq!(
            (i.issuer.as_str(), i.service.as_str()),
            ("berth", "reg.example.com")
        );
        assert_eq!(i.lifetime, Duration::from_secs(120));
        assert_eq!(i.session_lifetime, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(a.robots, Some(PathBuf::from("/auth/robots.yml")));
        assert_eq!(a.limits.client_failures, 3);
        assert_eq!(a.limits.user_failures, 50);
        assert_eq!(a.limits.window, Duration::from_secs(30));
        let p = a.policy.unwrap();
        assert_eq!(p.admins, ["root"]);
        assert_eq!(p.rules[0].actions, [Action::Pull, Action::Push]);
    }

    #[test]
    fn policy_mistakes_name_the_key() {
        let err = |yaml: &str| match load(yaml) {
            Err(ConfigError::Value { key, .. }) => key,
            other => panic!("expected an error, got {other:?}"),
        };
        let rule = |r: &str, a: &str| {
            format!("policy:\n  rules:\n    - users: [a]\n      repositories: [{r}]\n      actions: [{a}]\n")
        };
        assert_eq!(
            err(&rule("\"../x\"", "pull")),
            "policy.rules[0].repositories"
        );
        assert_eq!(err(&rule("x", "fly")), "policy.rules[0].actions");
        assert_eq!(
            err("policy:\n  anonymous:\n    pull: [\"A/*\"]\n"),
            "policy.anonymous.pull"
        );
        assert_eq!(
            err("policy:\n  rules:\n    - groups: [nope]\n      repositories: [x]\n      actions: [pull]\n"),
            "policy"
        );
        assert_eq!(err("auth:\n  issuer: {}\n  token:\n    realm: r\n    service: s\n    issuer: i\n    rootcertbundle: b\n"), "auth.issuer");
        assert_eq!(
            err("auth:\n  limits:\n    clientfailures: 0\n"),
            "auth.limits.clientfailures"
        );
        assert_eq!(
            err("auth:\n  issuer:\n    lifetime: 48h\n"),
            "auth.issuer.lifetime"
        );
        for bad in ["1m", "9600h"] {
            assert_eq!(
                err(&format!(
                    "auth:\n  issuer:\n    lifetime: 5m\n    sessionlifetime: {bad}\n"
                )),
                "auth.issuer.sessionlifetime"
            );
        }
        let off = load("auth:\n  issuer:\n    sessionlifetime: 0s\n").unwrap();
        assert_eq!(off.issuer.unwrap().session_lifetime, Duration::ZERO);
        assert_eq!(err("auth:\n  robots: {}\n"), "auth.robots.path");
        assert_eq!(
            err("database:\n  url: postgres://h/db\nauth:\n  issuer: {}\n"),
            "auth.issuer.key"
        );
        assert!(load("http:\n  trustedproxies: [\"10.0.0.0/8\", \"::1\"]\n").is_ok());
        assert!(matches!(
            load_str("http:\n  trustedproxies: [\"nope\"]\n"),
            Err(ConfigError::Value { key, .. }) if key == "http.trustedproxies"
        ));
    }

    #[test]
    fn auth_is_off_unless_configured() {
        assert!(!load("").unwrap().enabled());
        assert!(load("policy:\n  anonymous:\n    pull: [\"**\"]\n")
            .unwrap()
            .enabled());
    }
}
