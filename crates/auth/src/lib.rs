//! Berth's access control: who is calling, and what they may do.
//!
//! Design decision: this crate knows credentials, principals, scopes and policies, and nothing
//! of HTTP. The API layer turns headers into [`Credentials`], asks the [`Authenticator`] for a
//! [`Caller`], maps each endpoint to the repository and [`Action`]s it needs and asks for a
//! [`Decision`]; this crate never builds a response. That keeps the rules testable without a
//! server, and the HTTP layer free of policy.
//!
//! * [`Principal`]s are anonymous, htpasswd users or robot accounts (`robot$<name>`); the
//!   [`Policy`] adds groups and the admin flag.
//! * [`Scope`]s (`repository:team/app:pull,push`, `registry:catalog:*`) are parsed with
//!   `berth_oci::RepoName`'s validation: no traversal, wildcards or upper case can get through.
//! * [`htpasswd`] accepts bcrypt only; files are re-read when they change ([`reload`]).
//! * Passwords are verified with bcrypt off the async threads, with a short cache of recent
//!   successes ([`password`]); robot secrets are random 256-bit values stored as SHA-256
//!   ([`robots`]); comparisons are constant-time.
//! * Bearer tokens ([`token`]): Berth's own issuer (ES256/RS256) and registry:2's external
//!   `auth.token` mode (certificate bundle, `x5c` chains, libtrust and RFC 7638 key ids).
//! * Failed logins are limited per client and per user with bounded memory ([`ratelimit`]).
//!
//! Crates, and why: `bcrypt` (the reference Rust bcrypt, reads `$2y$` from apache's
//! htpasswd); `jsonwebtoken` 9 (widely used JWT crate; its `Validation` checks `exp`/`nbf`/`iss`/
//! `aud` and refuses algorithms outside an explicit list; version 9 keeps the workspace's Rust
//! 1.85 floor) on `ring` (already in the dependency tree through rustls; also generates the
//! P-256 key); `x509-parser` with `verify` (certificate parsing and ring-backed signature
//! checks for `x5c` chains); `subtle` (constant-time comparison); `humantime` (RFC 3339 times
//! and `30d` durations in the robots file and CLI).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod authenticator;
pub mod htpasswd;
mod options;
pub mod password;
pub mod pattern;
pub mod policy;
mod principal;
pub mod ratelimit;
pub mod reload;
pub mod robots;
mod scope;
pub mod token;

pub use authenticator::{
    AuthError, AuthFailure, Authenticator, Caller, Challenge, Credentials, Decision, Minted, Realm,
    SharedAuthenticator,
};
pub use options::{AuthOptions, ExternalTokenOptions, HtpasswdOptions, IssuerOptions};
pub use pattern::RepoPattern;
pub use policy::{Policy, PolicyConfig};
pub use principal::{Grant, Identity, Principal, ROBOT_PREFIX};
pub use scope::{Action, Actions, Scope, ScopeError};

/// The path of Berth's token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";
