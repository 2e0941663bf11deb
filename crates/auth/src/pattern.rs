//! Repository name patterns used by policies and robot accounts.
//!
//! Patterns are matched segment by segment (`/` separates segments):
//! * a segment `*` matches exactly one segment (`team-a/*` matches `team-a/app`, not
//!   `team-a/app/x`);
//! * `*` inside a segment matches any characters within that segment (`team-a/app-*`);
//! * a segment `**` matches one or more whole segments (`team-a/**` matches `team-a/app` and
//!   `team-a/app/x`, not `team-a` itself; `**` alone matches every repository);
//! * anything else matches literally.
//!
//! Patterns are validated when loaded: only the characters of repository names plus `*` are
//! allowed, and no segment may be empty, `.` or `..`.

use std::fmt;

use berth_oci::RepoName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated repository name pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RepoPattern {
    raw: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Segment {
    /// `**`
    Deep,
    /// A literal or a glob with `*`.
    Glob(String),
}

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid repository pattern {0:?}: use lower-case name segments separated by '/', with '*' (one segment) or '**' (any depth)")]
pub struct PatternError(pub String);

impl RepoPattern {
    /// Parses and validates a pattern.
    pub fn parse(s: &str) -> Result<RepoPattern, PatternError> {
        let err = || PatternError(s.to_string());
        if s.is_empty() || s.len() > 512 {
            return Err(err());
        }
        let segments = s
            .split('/')
            .map(|seg| parse_segment(seg).ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RepoPattern {
            raw: s.to_string(),
            segments,
        })
    }

    /// `**`: every repository.
    pub fn any() -> RepoPattern {
        RepoPattern {
            raw: "**".into(),
            segments: vec![Segment::Deep],
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &RepoName) -> bool {
        let parts: Vec<&str> = name.as_str().split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn parse_segment(seg: &str) -> Option<Segment> {
    if seg == "**" {
        return Some(Segment::Deep);
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-*".contains(c);
    let bad = seg.is_empty() || seg == "." || seg == ".." || seg.contains("**");
    if bad || !seg.chars().all(allowed) {
        return None;
    }
    Some(Segment::Glob(seg.to_string()))
}

fn match_segments(pat: &[Segment], parts: &[&str]) -> bool {
    match (pat.first(), parts.first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Segment::Glob(g)), Some(p)) => glob(g, p) && match_segments(&pat[1..], &parts[1..]),
        // `**` takes one segment, then either stops or keeps taking more.
        (Some(Segment::Deep), Some(_)) => {
            (1..=parts.len()).any(|taken| match_segments(&pat[1..], &parts[taken..]))
        }
    }
}

/// `*`-only glob within one segment.
fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoPattern({})", self.raw)
    }
}

impl Serialize for RepoPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for RepoPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        RepoPattern::parse(p)
            .unwrap()
            .matches(&RepoName::parse(name).unwrap())
    }

    #[test]
    fn one_segment_star() {
        assert!(m("team-a/*", "team-a/app"));
        assert!(!m("team-a/*", "team-a/app/x"));
        assert!(!m("team-a/*", "team-a"));
        assert!(!m("team-a/*", "team-b/app"));
        assert!(!m("team-a/*", "team-ab/app"));
        assert!(m("*", "app"));
        assert!(!m("*", "a/b"));
    }

    #[test]
    fn deep_star() {
        assert!(m("team-a/**", "team-a/app"));
        assert!(m("team-a/**", "team-a/app/x/y"));
        assert!(!m("team-a/**", "team-a"));
        assert!(!m("team-a/**", "team-ab/x"));
        assert!(m("**", "a"));
        assert!(m("**", "a/b/c"));
        assert!(m("**/cache", "x/y/cache"));
        assert!(!m("**/cache", "cache"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/b"));
    }

    #[test]
    fn globs_and_literals() {
        assert!(m("team-a/app-*", "team-a/app-web"));
        assert!(m("team-a/app-*", "team-a/app-1"));
        assert!(!m("team-a/app-*", "team-a/web"));
        assert!(m("*-cache", "pip-cache"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("library/ubuntu", "library/ubuntu"));
        assert!(!m("library/ubuntu", "library/ubuntu2"));
    }

    #[test]
    fn rejects_bad_patterns() {
        for p in [
            "", "A/*", "a//b", "../x", "a/./b", "a/***", "a/**x", "a b", "a:b", "/a", "a/",
        ] {
            assert!(RepoPattern::parse(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Vec<RepoPattern> = serde_yaml::from_str("[\"team-a/*\", \"**\"]").unwrap();
        assert_eq!(ok[0].as_str(), "team-a/*");
        assert!(serde_yaml::from_str::<Vec<RepoPattern>>("[\"../x\"]").is_err());
    }
}
