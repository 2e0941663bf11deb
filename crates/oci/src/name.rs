//! Repository names, tags and manifest references, validated against the OCI Distribution grammar.

use std::fmt;

use crate::{quoted, Digest};

/// Why a name, tag or reference was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The repository name breaks the grammar.
    #[error("invalid repository name {}: must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/…)* and be at most 255 characters", quoted(.0))]
    InvalidName(String),
    /// The tag breaks the grammar.
    #[error("invalid tag {}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}", quoted(.0))]
    InvalidTag(String),
    /// A reference that is neither a valid tag nor a valid digest.
    #[error("invalid reference {}: not a tag or a digest", quoted(.0))]
    InvalidReference(String),
}

/// Longest repository name accepted (the spec's recommended interoperable limit).
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `team/app` (path components separated by `/`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates `s` against the spec grammar.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(component_ok) {
            return Err(NameError::InvalidName(s.to_string()));
        }
        Ok(RepoName(s.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

/// A validated tag such as `v1.2.3`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// Longest tag accepted by the spec grammar.
pub const MAX_TAG_LEN: usize = 128;

impl Tag {
    /// Validates `s` against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && word(&b[0])
            && b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-');
        if !ok {
            return Err(NameError::InvalidTag(s.to_string()));
        }
        Ok(Tag(s.to_string()))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable content digest.
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Digest::parse(s)
                .map(Reference::Digest)
                .map_err(|_| NameError::InvalidReference(s.to_string()))
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        let good = [
            "a",
            "library/ubuntu",
            "a/b/c/d",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "my.app",
            "0abc",
            "team-a/svc.web_x",
        ];
        for n in good {
            assert!(RepoName::parse(n).is_ok(), "{n}");
        }
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        let bad = [
            "",
            "A",
            "Upper/case",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "-a",
            "a-",
            "a___b",
            "a..b",
            "a._b",
            "a b",
            "a%2fb",
            "a\\b",
            too_long.as_str(),
        ];
        for n in bad {
            assert!(RepoName::parse(n).is_err(), "{n:?} should be rejected");
        }
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn tags_follow_the_grammar() {
        for t in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(t).is_ok(), "{t}");
        }
        for t in ["", ".x", "-x", "a/b", "a:b", "..", &"t".repeat(129), "é"] {
            assert!(Tag::parse(t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn references_split_on_colon() {
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:xyz"),
            Err(NameError::InvalidReference(_))
        ));
        assert!(matches!(
            Reference::parse("a/b"),
            Err(NameError::InvalidTag(_))
        ));
    }

    #[test]
    fn messages_quote_and_bound_the_input() {
        let hostile = format!("x\n\u{1b}[31m{}", "y".repeat(10_000));
        for msg in [
            RepoName::parse(&hostile).unwrap_err().to_string(),
            Tag::parse(&hostile).unwrap_err().to_string(),
            Reference::parse(&format!("sha256:{hostile}"))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(msg.len() < 300, "{msg}");
            assert!(!msg.chars().any(char::is_control), "{msg}");
            assert!(msg.contains("\\u{a}\\u{1b}[31m"), "{msg}");
        }
    }
}
