//! Robot accounts: named credentials for CI, scoped to repository patterns and actions.
//!
//! A robot logs in as `robot$<name>` with a secret Berth generated (32 random bytes,
//! base64url). The file stores only the SHA-256 of the secret: the secret has 256 bits of
//! entropy, so a slow hash like bcrypt would add nothing but CPU per request, and a fast hash
//! lets every request be checked without a cache. Comparison is constant-time.
//!
//! The file is YAML, written atomically by `berth robot …` and re-read by the server when it
//! changes, so several replicas can share it through a mounted Kubernetes Secret:
//!
//! ```yaml
//! robots:
//!   - name: ci
//!     secret_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!     repositories: ["team-a/*"]
//!     actions: [pull, push]
//!     created: 2025-01-01T00:00:00Z
//!     expires: 2025-01-31T00:00:00Z   # optional
//!     description: nightly builds      # optional
//! ```

use std::time::SystemTime;

use base64::Engine as _;
use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::pattern::RepoPattern;
use crate::principal::Grant;
use crate::scope::Action;

/// One robot account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Robot {
    /// Name without the `robot$` prefix.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Repositories the robot may act on.
    pub repositories: Vec<RepoPattern>,
    /// What it may do there.
    pub actions: Vec<Action>,
    /// When it was created or last rotated (RFC 3339).
    pub created: String,
    /// When it stops working (RFC 3339); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Robot {
    /// The robot's own grant.
    pub fn grant(&self) -> Grant {
        Grant {
            repositories: self.repositories.clone(),
            actions: self.actions.iter().copied().collect(),
        }
    }

    /// Whether the robot has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339(e).ok())
            .is_some_and(|t| t <= now)
    }
}

/// The robots file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Robots {
    /// Every robot.
    #[serde(default)]
    pub robots: Vec<Robot>,
}

/// The outcome of a robot login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RobotCheck {
    /// Right secret, not expired: the robot's grant.
    Valid(Grant),
    /// Right secret, but past its expiry.
    Expired,
    /// Unknown robot or wrong secret.
    Rejected,
}

/// Why a robot operation or file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RobotError {
    /// The YAML is malformed.
    #[error("invalid robots file: {0}")]
    Parse(String),
    /// Bad name.
    #[error("invalid robot name {0:?}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    Name(String),
    /// Two robots with one name.
    #[error("robot {0:?} appears twice")]
    Duplicate(String),
    /// A field is invalid.
    #[error("robot {name:?}: {message}")]
    Field {
        /// The robot.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// No such robot.
    #[error("no robot named {0:?}")]
    Unknown(String),
    /// Creating one that exists.
    #[error("robot {0:?} already exists (use rotate for a new secret)")]
    Exists(String),
    /// The random generator failed.
    #[error("cannot generate a secret")]
    Random,
}

/// What `create` needs.
#[derive(Clone, Debug)]
pub struct NewRobot {
    /// Name without prefix.
    pub name: String,
    /// Repository patterns.
    pub repositories: Vec<RepoPattern>,
    /// Actions.
    pub actions: Vec<Action>,
    /// Expiry, if any.
    pub expires: Option<SystemTime>,
    /// Free text.
    pub description: Option<String>,
}

impl Robots {
    /// Parses and validates the file.
    pub fn parse(text: &str) -> Result<Robots, RobotError> {
        if text.trim().is_empty() {
            return Ok(Robots::default());
        }
        let r: Robots = serde_yaml::from_str(text).map_err(|e| RobotError::Parse(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for robot in &r.robots {
            validate(robot)?;
            if !seen.insert(robot.name.as_str()) {
                return Err(RobotError::Duplicate(robot.name.clone()));
            }
        }
        Ok(r)
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!("# Robot accounts, managed with `berth robot`. Only SHA-256 hashes of the secrets are stored.\n{body}")
    }

    /// The robot called `name`.
    pub fn get(&self, name: &str) -> Option<&Robot> {
        self.robots.iter().find(|r| r.name == name)
    }

    /// Checks a login (constant-time in the secret).
    pub fn check(&self, name: &str, secret: &str, now: SystemTime) -> RobotCheck {
        let Some(robot) = self.get(name) else {
            return RobotCheck::Rejected;
        };
        let Ok(stored) = hex::decode(&robot.secret_sha256) else {
            return RobotCheck::Rejected;
        };
        let given = Sha256::digest(secret.as_bytes());
        if !bool::from(given.as_slice().ct_eq(&stored)) {
            return RobotCheck::Rejected;
        }
        if robot.expired(now) {
            return RobotCheck::Expired;
        }
        RobotCheck::Valid(robot.grant())
    }

    /// Adds a robot; returns its secret (shown once, never stored).
    pub fn create(&mut self, new: NewRobot, now: SystemTime) -> Result<String, RobotError> {
        if self.get(&new.name).is_some() {
            return Err(RobotError::Exists(new.name));
        }
        let secret = generate_secret()?;
        let robot = Robot {
            name: new.name,
            secret_sha256: hash_secret(&secret),
            repositories: new.repositories,
            actions: new.actions,
            created: rfc3339(now),
            expires: new.expires.map(rfc3339),
            description: new.description,
        };
        validate(&robot)?;
        self.robots.push(robot);
        Ok(secret)
    }

    /// Replaces a robot's secret (the old one stops working at once); optionally a new expiry.
    pub fn rotate(
        &mut self,
        name: &str,
        expires: Option<Option<SystemTime>>,
        now: SystemTime,
    ) -> Result<String, RobotError> {
        let robot = self
            .robots
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| RobotError::Unknown(name.to_string()))?;
        let secret = generate_secret()?;
        robot.secret_sha256 = hash_secret(&secret);
        robot.created = rfc3339(now);
        if let Some(e) = expires {
            robot.expires = e.map(rfc3339);
        }
        Ok(secret)
    }

    /// Removes a robot.
    pub fn delete(&mut self, name: &str) -> Result<(), RobotError> {
        let before = self.robots.len();
        self.robots.retain(|r| r.name != name);
        if self.robots.len() == before {
            return Err(RobotError::Unknown(name.to_string()));
        }
        Ok(())
    }
}

fn validate(r: &Robot) -> Result<(), RobotError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let name_ok = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name.chars().all(ok_char)
        && r.name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(RobotError::Name(r.name.clone()));
    }
    let field = |message: String| RobotError::Field {
        name: r.name.clone(),
        message,
    };
    if r.secret_sha256.len() != 64 || hex::decode(&r.secret_sha256).is_err() {
        return Err(field("secret_sha256 must be 64 hex characters".into()));
    }
    if r.repositories.is_empty() || r.actions.is_empty() {
        return Err(field(
            "needs at least one repository pattern and one action".into(),
        ));
    }
    for (key, v) in [
        ("created", Some(&r.created)),
        ("expires", r.expires.as_ref()),
    ] {
        if let Some(v) = v {
            humantime::parse_rfc3339(v)
                .map_err(|e| field(format!("{key}: {e} (want e.g. 2025-01-31T00:00:00Z)")))?;
        }
    }
    Ok(())
}

/// Hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn generate_secret() -> Result<String, RobotError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RobotError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_oci::RepoName;

    use super::*;

    fn new(name: &str, expires: Option<SystemTime>) -> NewRobot {
        NewRobot {
            name: name.into(),
            repositories: vec![RepoPattern::parse("team-a/*").unwrap()],
            actions: vec![Action::Pull, Action::Push],
            expires,
            description: Some("ci".into()),
        }
    }

    #[test]
    fn create_check_rotate_delete() {
        let now = SystemTime::now();
        let mut r = Robots::default();
        let secret = r.create(new("ci", None), now).unwrap();
        assert_eq!(secret.len(), 43);
        assert!(
            !r.render().contains(&secret),
            "the secret itself is never stored"
        );
        let RobotCheck::Valid(g) = r.check("ci", &secret, now) else {
            panic!("valid secret refused")
        };
        assert_eq!(
            g.actions_on(&RepoName::parse("team-a/x").unwrap())
                .to_string(),
            "pull,push"
        );
        assert!(g
            .actions_on(&RepoName::parse("team-b/x").unwrap())
            .is_empty());
        assert_eq!(r.check("ci", "wrong", now), RobotCheck::Rejected);
        assert_eq!(r.check("other", &secret, now), RobotCheck::Rejected);
        assert_eq!(
            r.create(new("ci", None), now),
            Err(RobotError::Exists("ci".into()))
        );

        let rotated = r.rotate("ci", None, now).unwrap();
        assert_ne!(rotated, secret);
        assert_eq!(
            r.check("ci", &secret, now),
            RobotCheck::Rejected,
            "old secret dead"
        );
        assert!(matches!(r.check("ci", &rotated, now), RobotCheck::Valid(_)));

        let reparsed = Robots::parse(&r.render()).unwrap();
        assert_eq!(reparsed, r);
        r.delete("ci").unwrap();
        assert_eq!(r.check("ci", &rotated, now), RobotCheck::Rejected);
        assert_eq!(r.delete("ci"), Err(RobotError::Unknown("ci".into())));
    }

    #[test]
    fn expiry() {
        let now = SystemTime::now();
        let mut r = Robots::default();
        let s = r
            .create(new("old", Some(now + Duration::from_secs(60))), now)
            .unwrap();
        assert!(matches!(r.check("old", &s, now), RobotCheck::Valid(_)));
        let later = now + Duration::from_secs(120);
        assert_eq!(r.check("old", &s, later), RobotCheck::Expired);
        // rotation can extend the expiry
        let s2 = r
            .rotate("old", Some(Some(later + Duration::from_secs(60))), later)
            .unwrap();
        assert!(matches!(r.check("old", &s2, later), RobotCheck::Valid(_)));
    }

    #[test]
    fn rejects_bad_files() {
        let ok = "robots:\n  - name: ci\n    secret_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n    repositories: [\"a/*\"]\n    actions: [pull]\n    created: 2025-01-01T00:00:00Z\n";
        let r = Robots::parse(ok).unwrap();
        assert!(matches!(
            r.check("ci", "test", SystemTime::now()),
            RobotCheck::Valid(_)
        ));
        assert_eq!(Robots::parse("").unwrap(), Robots::default());
        let dup = format!("{ok}{}", &ok["robots:\n".len()..]);
        assert_eq!(Robots::parse(&dup), Err(RobotError::Duplicate("ci".into())));
        for (from, to) in [
            ("name: ci", "name: CI"),
            ("9f86d0", "zz86d0"),
            ("[\"a/*\"]", "[]"),
            ("[\"a/*\"]", "[\"../x\"]"),
            ("[pull]", "[fly]"),
            ("2025-01-01T00:00:00Z", "yesterday"),
            ("created:", "color: red\n    created:"),
        ] {
            assert!(
                Robots::parse(&ok.replace(from, to)).is_err(),
                "{from} -> {to}"
            );
        }
    }
}
