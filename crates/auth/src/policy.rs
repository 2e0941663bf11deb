//! Access policy: admins, groups, rules granting actions on repository patterns, anonymous pull.
//!
//! Default deny: an action is allowed only when the anonymous section, the admin list, the
//! principal's own grants (robots) or a rule grants it. What is granted is the union of all of
//! them; nothing can take a grant away again (no deny rules), which keeps policies easy to read.
//!
//! ```yaml
//! policy:
//!   admins: [alice]
//!   groups:
//!     team-a: [bob, carol]
//!   anonymous:
//!     pull: ["public/**"]
//!   rules:
//!     - groups: [team-a]
//!       repositories: ["team-a/**"]
//!       actions: [pull, push, delete]
//!     - users: ["*"]             # every htpasswd user
//!       repositories: ["shared/*"]
//!       actions: [pull]
//!     - robots: [ci]             # robot$ci, on top of its own grants
//!       repositories: ["team-a/**"]
//!       actions: [pull]
//! ```

use std::collections::BTreeMap;

use berth_oci::RepoName;
use serde::Deserialize;

use crate::pattern::RepoPattern;
use crate::principal::{Identity, Principal};
use crate::scope::{Action, Actions};

/// The `policy` section as written in the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Users with every action on every repository (and the full catalog).
    #[serde(default)]
    pub admins: Vec<String>,
    /// Group name → member user names.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// What callers without credentials may do.
    #[serde(default)]
    pub anonymous: AnonymousConfig,
    /// Grants.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `policy.anonymous`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Repositories anyone may pull, with or without credentials.
    #[serde(default)]
    pub pull: Vec<RepoPattern>,
}

/// One rule: subjects, repositories, actions.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// User names; `*` is every authenticated htpasswd user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group names from `policy.groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Robot names (without the `robot$` prefix); `*` is every robot.
    #[serde(default)]
    pub robots: Vec<String>,
    /// Repository patterns.
    pub repositories: Vec<RepoPattern>,
    /// Granted actions.
    pub actions: Vec<Action>,
}

/// Why a policy was refused at load time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A rule names nobody, no repository or no action.
    #[error("policy.rules[{0}]: {1}")]
    Rule(usize, &'static str),
    /// A rule names a group that `policy.groups` does not define.
    #[error("policy.rules[{0}]: unknown group {1:?} (define it under policy.groups)")]
    UnknownGroup(usize, String),
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    cfg: PolicyConfig,
}

impl Policy {
    /// Validates a policy section.
    pub fn new(cfg: PolicyConfig) -> Result<Policy, PolicyError> {
        for (i, r) in cfg.rules.iter().enumerate() {
            if r.users.is_empty() && r.groups.is_empty() && r.robots.is_empty() {
                return Err(PolicyError::Rule(i, "names no users, groups or robots"));
            }
            if r.repositories.is_empty() {
                return Err(PolicyError::Rule(i, "names no repositories"));
            }
            if r.actions.is_empty() {
                return Err(PolicyError::Rule(i, "grants no actions"));
            }
            if let Some(g) = r.groups.iter().find(|g| !cfg.groups.contains_key(*g)) {
                return Err(PolicyError::UnknownGroup(i, g.clone()));
            }
        }
        Ok(Policy { cfg })
    }

    /// registry:2's behaviour when no `policy` section is configured: every authenticated
    /// user may do everything, robots keep to their own grants, anonymous callers get nothing.
    pub fn registry2_compatible() -> Policy {
        Policy {
            cfg: PolicyConfig {
                rules: vec![RuleConfig {
                    users: vec!["*".into()],
                    repositories: vec![RepoPattern::any()],
                    actions: Action::ALL.to_vec(),
                    ..RuleConfig::default()
                }],
                ..PolicyConfig::default()
            },
        }
    }

    /// Fills in groups and the admin flag for a user.
    pub fn enrich(&self, mut p: Principal) -> Principal {
        if let Identity::User(name) = &p.identity {
            p.admin = self.cfg.admins.iter().any(|a| a == name);
            p.groups = self
                .cfg
                .groups
                .iter()
                .filter(|(_, members)| members.iter().any(|m| m == name))
                .map(|(g, _)| g.clone())
                .collect();
        }
        p
    }

    /// What `p` may do to `repo`.
    pub fn actions(&self, p: &Principal, repo: &RepoName) -> Actions {
        if p.admin {
            return Actions::ALL;
        }
        let mut acts = if self.cfg.anonymous.pull.iter().any(|x| x.matches(repo)) {
            Actions::only(Action::Pull)
        } else {
            Actions::NONE
        };
        for g in &p.grants {
            acts = acts.union(g.actions_on(repo));
        }
        for r in self.cfg.rules.iter().filter(|r| applies(r, p)) {
            if r.repositories.iter().any(|x| x.matches(repo)) {
                acts = acts.union(r.actions.iter().copied().collect());
            }
        }
        acts
    }

    /// Whether `p` may do `action` to `repo`.
    pub fn allows(&self, p: &Principal, repo: &RepoName, action: Action) -> bool {
        self.actions(p, repo).contains(action)
    }
}

fn applies(r: &RuleConfig, p: &Principal) -> bool {
    let named = |list: &[String], name: &str| list.iter().any(|x| x == "*" || x == name);
    match &p.identity {
        Identity::Anonymous => false,
        Identity::User(u) => named(&r.users, u) || r.groups.iter().any(|g| p.groups.contains(g)),
        Identity::Robot(name) => named(&r.robots, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Grant;

    const POLICY: &str = r#"
admins: [root]
groups:
  team-a: [bob, carol]
anonymous:
  pull: ["public/**"]
rules:
  - groups: [team-a]
    repositories: ["team-a/**"]
    actions: [pull, push]
  - users: [carol]
    repositories: ["team-a/**"]
    actions: [delete]
  - users: ["*"]
    repositories: ["shared/*"]
    actions: [pull]
  - robots: [ci]
    repositories: ["tools/*"]
    actions: [pull]
"#;

    fn policy() -> Policy {
        Policy::new(serde_yaml::from_str(POLICY).unwrap()).unwrap()
    }

    fn user(p: &Policy, name: &str) -> Principal {
        p.enrich(Principal::bare(Identity::User(name.into())))
    }

    fn acts(p: &Policy, who: &Principal, repo: &str) -> String {
        p.actions(who, &RepoName::parse(repo).unwrap()).to_string()
    }

    #[test]
    fn default_deny() {
        let p = policy();
        let dave = user(&p, "dave");
        assert_eq!(acts(&p, &dave, "team-a/app"), "");
        assert_eq!(acts(&p, &dave, "other"), "");
        assert_eq!(acts(&p, &Principal::anonymous(), "team-a/app"), "");
    }

    #[test]
    fn groups_users_and_wildcard_users() {
        let p = policy();
        let bob = user(&p, "bob");
        assert_eq!(bob.groups, ["team-a"]);
        assert_eq!(acts(&p, &bob, "team-a/app"), "pull,push");
        assert_eq!(acts(&p, &bob, "team-a/app/sub"), "pull,push");
        assert_eq!(acts(&p, &bob, "team-b/app"), "");
        assert_eq!(acts(&p, &user(&p, "carol"), "team-a/x"), "pull,push,delete");
        assert_eq!(acts(&p, &user(&p, "dave"), "shared/x"), "pull");
        assert_eq!(acts(&p, &user(&p, "dave"), "shared/x/y"), "");
    }

    #[test]
    fn admins_and_anonymous() {
        let p = policy();
        let root = user(&p, "root");
        assert!(root.admin);
        assert_eq!(acts(&p, &root, "anything/at/all"), "pull,push,delete");
        let anon = Principal::anonymous();
        assert_eq!(acts(&p, &anon, "public/x/y"), "pull");
        assert_eq!(acts(&p, &user(&p, "dave"), "public/x"), "pull");
        assert!(!p.allows(&anon, &RepoName::parse("public/x").unwrap(), Action::Push));
    }

    #[test]
    fn robots_get_own_grants_and_rules_but_not_user_rules() {
        let p = policy();
        let mut ci = Principal::bare(Identity::Robot("ci".into()));
        ci.grants.push(Grant {
            repositories: vec![RepoPattern::parse("team-a/*").unwrap()],
            actions: Actions::only(Action::Push),
        });
        assert_eq!(acts(&p, &ci, "team-a/app"), "push");
        assert_eq!(acts(&p, &ci, "tools/x"), "pull");
        // `users: ["*"]` is for users, not robots
        assert_eq!(acts(&p, &ci, "shared/x"), "");
        // a user called like the robot gets nothing from the robot rule
        assert_eq!(acts(&p, &user(&p, "ci"), "tools/x"), "");
    }

    #[test]
    fn an_empty_policy_allows_nothing() {
        let p = Policy::new(serde_yaml::from_str("{}").unwrap()).unwrap();
        assert_eq!(acts(&p, &user(&p, "alice"), "a/b"), "");
        assert_eq!(acts(&p, &Principal::anonymous(), "a/b"), "");
    }

    #[test]
    fn compat_policy_gives_users_everything_and_anonymous_nothing() {
        let p = Policy::registry2_compatible();
        assert_eq!(acts(&p, &user(&p, "x"), "a/b"), "pull,push,delete");
        assert_eq!(acts(&p, &Principal::anonymous(), "a/b"), "");
        assert_eq!(
            acts(&p, &Principal::bare(Identity::Robot("r".into())), "a"),
            ""
        );
    }

    #[test]
    fn rejects_bad_policies() {
        let bad = |y: &str| Policy::new(serde_yaml::from_str(y).unwrap()).unwrap_err();
        assert_eq!(
            bad("rules: [{repositories: [a], actions: [pull]}]"),
            PolicyError::Rule(0, "names no users, groups or robots")
        );
        assert_eq!(
            bad("rules: [{users: [a], repositories: [], actions: [pull]}]"),
            PolicyError::Rule(0, "names no repositories")
        );
        assert!(matches!(
            bad("rules: [{groups: [nope], repositories: [a], actions: [pull]}]"),
            PolicyError::UnknownGroup(0, _)
        ));
        assert!(serde_yaml::from_str::<PolicyConfig>(
            "rules: [{users: [a], repositories: [a], actions: [fly]}]"
        )
        .is_err());
        assert!(serde_yaml::from_str::<PolicyConfig>("admin: [a]").is_err());
        assert!(serde_yaml::from_str::<PolicyConfig>("anonymous: {push: [a]}").is_err());
    }
}
