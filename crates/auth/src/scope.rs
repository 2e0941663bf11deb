//! Actions and scopes: `repository:team/app:pull,push`, `registry:catalog:*`.
//!
//! A scope string comes from the network (token requests, token claims), so it is parsed into
//! types whose repository name went through [`RepoName::parse`]: a scope can never name `..`, a
//! wildcard or an upper-case letter, and everything downstream compares validated names only.

use std::fmt;

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};

/// One thing a caller may do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests and tags, mount blobs into the repository.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action, in display order.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The action's name as it appears in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// Parses `pull`, `push` or `delete`.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Action`]s (a bit set; `Copy`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// Pull, push and delete.
    pub const ALL: Actions = Actions(7);

    /// The set holding exactly `a`.
    pub fn only(a: Action) -> Actions {
        Actions(a.bit())
    }

    /// Whether `a` is in the set.
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// Whether every action of `other` is in the set.
    pub fn contains_all(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set plus `a`.
    pub fn with(self, a: Action) -> Actions {
        Actions(self.0 | a.bit())
    }

    /// Union.
    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// Intersection.
    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in display order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Parses a comma-separated list; `*` means every action, unknown names are ignored (the
    /// token spec lets a server drop what it does not understand).
    pub fn parse_list(s: &str) -> Actions {
        s.split(',')
            .map(str::trim)
            .fold(Actions::NONE, |acc, a| match a {
                "*" => Actions::ALL,
                other => Action::parse(other).map_or(acc, |x| acc.with(x)),
            })
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter().fold(Actions::NONE, Actions::with)
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Action::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actions({self})")
    }
}

/// A requested or granted scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `repository:<name>:<actions>`
    Repository(RepoName, Actions),
    /// `registry:catalog:*`
    Catalog,
}

/// Why a scope string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    /// Not `type:name:actions`.
    #[error("malformed scope {0:?}: expected type:name:actions")]
    Malformed(String),
    /// The repository name is invalid (traversal, wildcard, bad characters).
    #[error("invalid repository name in scope {0:?}")]
    Name(String),
    /// A resource type or registry resource Berth does not know.
    #[error("unsupported scope {0:?}")]
    Unsupported(String),
}

impl Scope {
    /// Parses one scope. The name is everything between the first and the last `:` (names
    /// cannot contain `:`, but this keeps `repository:host:5000/x:pull` from being misread);
    /// `repository(plugin)` style resource classes are accepted as `repository`.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let malformed = || ScopeError::Malformed(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        let kind = kind.split('(').next().unwrap_or(kind);
        match kind {
            "repository" => {
                let repo = RepoName::parse(name).map_err(|_| ScopeError::Name(s.to_string()))?;
                Ok(Scope::Repository(repo, Actions::parse_list(actions)))
            }
            "registry" if name == "catalog" => Ok(Scope::Catalog),
            _ => Err(ScopeError::Unsupported(s.to_string())),
        }
    }

    /// Parses a `scope` parameter, which may hold several scopes separated by spaces.
    pub fn parse_many(s: &str) -> Result<Vec<Scope>, ScopeError> {
        s.split_whitespace().map(Scope::parse).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repository(name, actions) => write!(f, "repository:{name}:{actions}"),
            Scope::Catalog => f.write_str("registry:catalog:*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, actions: Actions) -> Scope {
        Scope::Repository(RepoName::parse(name).unwrap(), actions)
    }

    #[test]
    fn parses_repository_and_catalog_scopes() {
        let pp = Actions::only(Action::Pull).with(Action::Push);
        assert_eq!(
            Scope::parse("repository:team/app:pull,push"),
            Ok(repo("team/app", pp))
        );
        assert_eq!(
            Scope::parse("repository(plugin):x:pull"),
            Ok(repo("x", Actions::only(Action::Pull)))
        );
        assert_eq!(Scope::parse("repository:a:*"), Ok(repo("a", Actions::ALL)));
        assert_eq!(
            Scope::parse("repository:a:pull,frobnicate"),
            Ok(repo("a", Actions::only(Action::Pull)))
        );
        assert_eq!(Scope::parse("registry:catalog:*"), Ok(Scope::Catalog));
        assert_eq!(
            Scope::parse_many("repository:a:pull repository:b:push")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn rejects_traversal_wildcards_and_junk() {
        for s in [
            "repository:../etc:pull",
            "repository:a/../b:pull",
            "repository:team-a/*:pull",
            "repository:**:pull",
            "repository:A:pull",
            "repository::pull",
            "repository:a b:pull",
            "repository:a%2f..:pull",
        ] {
            assert!(
                matches!(Scope::parse(s), Err(ScopeError::Name(_))),
                "{s}: {:?}",
                Scope::parse(s)
            );
        }
        assert!(matches!(
            Scope::parse("repository"),
            Err(ScopeError::Malformed(_))
        ));
        assert!(matches!(
            Scope::parse("repository:a"),
            Err(ScopeError::Malformed(_))
        ));
        assert!(matches!(
            Scope::parse("registry:other:*"),
            Err(ScopeError::Unsupported(_))
        ));
        assert!(matches!(
            Scope::parse("bucket:a:pull"),
            Err(ScopeError::Unsupported(_))
        ));
    }

    #[test]
    fn displays_round_trip() {
        for s in [
            "repository:a/b:pull,push",
            "registry:catalog:*",
            "repository:x:delete",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Actions::parse_list("push,pull").to_string(), "pull,push");
    }

    #[test]
    fn action_sets() {
        let p = Actions::only(Action::Pull);
        assert!(Actions::ALL.contains_all(p));
        assert!(!p.contains_all(Actions::ALL));
        assert!(p.intersect(Actions::only(Action::Push)).is_empty());
        assert_eq!(
            p.union(Actions::only(Action::Delete)).to_string(),
            "pull,delete"
        );
        let from_iter: Actions = [Action::Push, Action::Pull].into_iter().collect();
        assert_eq!(from_iter, p.with(Action::Push));
    }
}
