//! Who is asking: anonymous, a user from htpasswd, or a robot account.

use std::fmt;

use berth_oci::RepoName;

use crate::pattern::RepoPattern;
use crate::scope::Actions;

/// The prefix that marks a robot account's login name (`robot$ci`). A name with this prefix is
/// never looked up in htpasswd, so a user cannot impersonate a robot or the other way round.
pub const ROBOT_PREFIX: &str = "robot$";

/// The kind and name of a caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// An htpasswd user (or the subject of an externally issued token).
    User(String),
    /// A robot account, by its bare name (`ci` for `robot$ci`).
    Robot(String),
}

impl Identity {
    /// The identity a login name stands for: `robot$x` is robot `x`, anything else a user.
    pub fn from_login(login: &str) -> Identity {
        match login.strip_prefix(ROBOT_PREFIX) {
            Some(name) => Identity::Robot(name.to_string()),
            None => Identity::User(login.to_string()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::User(u) => f.write_str(u),
            Identity::Robot(r) => write!(f, "{ROBOT_PREFIX}{r}"),
        }
    }
}

/// A grant carried by the principal itself (a robot's own scope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Repositories it covers.
    pub repositories: Vec<RepoPattern>,
    /// Actions it allows on them.
    pub actions: Actions,
}

impl Grant {
    /// The actions this grant allows on `repo`.
    pub fn actions_on(&self, repo: &RepoName) -> Actions {
        if self.repositories.iter().any(|p| p.matches(repo)) {
            self.actions
        } else {
            Actions::NONE
        }
    }
}

/// An authenticated (or anonymous) caller with what the policy knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Who.
    pub identity: Identity,
    /// Groups the policy puts the user in.
    pub groups: Vec<String>,
    /// Whether the policy makes the user an administrator (every action everywhere).
    pub admin: bool,
    /// Grants carried by the principal itself (robots).
    pub grants: Vec<Grant>,
}

impl Principal {
    /// The anonymous caller.
    pub fn anonymous() -> Principal {
        Principal::bare(Identity::Anonymous)
    }

    /// A principal with no groups, grants or admin flag.
    pub fn bare(identity: Identity) -> Principal {
        Principal {
            identity,
            groups: Vec::new(),
            admin: false,
            grants: Vec::new(),
        }
    }

    /// Whether no credentials were given.
    pub fn is_anonymous(&self) -> bool {
        self.identity == Identity::Anonymous
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.identity.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_map_to_identities() {
        assert_eq!(
            Identity::from_login("alice"),
            Identity::User("alice".into())
        );
        assert_eq!(
            Identity::from_login("robot$ci"),
            Identity::Robot("ci".into())
        );
        assert_eq!(Identity::Robot("ci".into()).to_string(), "robot$ci");
        assert_eq!(Principal::anonymous().to_string(), "anonymous");
        assert!(Principal::anonymous().is_anonymous());
    }

    #[test]
    fn grants_match_patterns() {
        let g = Grant {
            repositories: vec![RepoPattern::parse("team-a/*").unwrap()],
            actions: Actions::ALL,
        };
        assert_eq!(
            g.actions_on(&RepoName::parse("team-a/x").unwrap()),
            Actions::ALL
        );
        assert!(g
            .actions_on(&RepoName::parse("team-b/x").unwrap())
            .is_empty());
    }
}
