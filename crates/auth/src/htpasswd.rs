//! htpasswd files with bcrypt entries, as written by `htpasswd -B` and `berth user add`.
//!
//! Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted: the other kinds htpasswd can write (MD5
//! `$apr1$`, SHA-1 `{SHA}`, crypt, plain text) are fast to brute-force, and registry:2 refuses
//! them too. A file holding one fails to load with an error naming the line and the user, so the
//! mistake shows at startup rather than as a mysterious 401 later.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::principal::ROBOT_PREFIX;

/// Default bcrypt cost for new entries (what `htpasswd -B` uses).
pub const DEFAULT_COST: u32 = 10;

/// The longest password bcrypt reads, in UTF-8 bytes: it ignores every byte past the 72nd, so a
/// longer password would be accepted by anything sharing its first 72 bytes.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A parsed htpasswd file: users in file order, with their bcrypt hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Htpasswd {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

/// Why an htpasswd file or entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HtpasswdError {
    /// A line is not `user:hash`.
    #[error("line {line}: expected user:hash")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// A hash that is not bcrypt.
    #[error("line {line} (user {user:?}): unsupported password hash {kind}; only bcrypt entries ($2y$, $2b$, $2a$) are accepted: recreate them with `berth user add` or `htpasswd -B`")]
    UnsupportedHash {
        /// 1-based line number.
        line: usize,
        /// The user of that line.
        user: String,
        /// What the hash looks like (`$apr1$ (MD5)`, …).
        kind: &'static str,
    },
    /// The same user twice.
    #[error("line {line}: user {user:?} appears twice")]
    Duplicate {
        /// 1-based line number of the second entry.
        line: usize,
        /// The user.
        user: String,
    },
    /// A user name that cannot be used.
    #[error("line {line}: invalid user name {user:?}: {why}")]
    BadUser {
        /// 1-based line number.
        line: usize,
        /// The name.
        user: String,
        /// Why.
        why: &'static str,
    },
    /// Hashing failed (bad cost).
    #[error("cannot hash password: {0}")]
    Hash(String),
    /// An empty password.
    #[error("the password is empty")]
    EmptyPassword,
    /// A password longer than bcrypt reads ([`MAX_PASSWORD_BYTES`]).
    #[error("passwords are limited to {MAX_PASSWORD_BYTES} bytes (bcrypt); this one has {len}")]
    PasswordTooLong {
        /// Its length in UTF-8 bytes.
        len: usize,
    },
}

/// Refuses a password bcrypt cannot hash faithfully: empty, or over [`MAX_PASSWORD_BYTES`]
/// UTF-8 bytes (bcrypt would silently ignore the rest).
pub fn check_password(password: &str) -> Result<(), HtpasswdError> {
    match password.len() {
        0 => Err(HtpasswdError::EmptyPassword),
        len if len > MAX_PASSWORD_BYTES => Err(HtpasswdError::PasswordTooLong { len }),
        _ => Ok(()),
    }
}

impl Htpasswd {
    /// Parses file contents. Empty lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut h = Htpasswd::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (user, hash) = l.split_once(':').ok_or(HtpasswdError::Malformed { line })?;
            check_user(user, line)?;
            if let Some(kind) = non_bcrypt_kind(hash) {
                return Err(HtpasswdError::UnsupportedHash {
                    line,
                    user: user.to_string(),
                    kind,
                });
            }
            if h.index.contains_key(user) {
                return Err(HtpasswdError::Duplicate {
                    line,
                    user: user.to_string(),
                });
            }
            h.insert(user, hash.to_string());
        }
        Ok(h)
    }

    /// The bcrypt hash of `user`.
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.index.get(user).map(|&i| self.entries[i].1.as_str())
    }

    /// User names in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(u, _)| u.as_str())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `user` or replaces its password, hashing with bcrypt at `cost`. The password must
    /// pass [`check_password`].
    pub fn set_password(
        &mut self,
        user: &str,
        password: &str,
        cost: u32,
    ) -> Result<(), HtpasswdError> {
        check_user(user, 0)?;
        check_password(password)?;
        let hash = bcrypt::hash(password, cost).map_err(|e| HtpasswdError::Hash(e.to_string()))?;
        match self.index.get(user) {
            Some(&i) => self.entries[i].1 = hash,
            None => self.insert(user, hash),
        }
        Ok(())
    }

    /// Removes `user`; false when it was not there.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.entries.remove(i);
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (u, _))| (u.clone(), i))
            .collect();
        true
    }

    /// The file contents (`user:hash` lines).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (u, h) in &self.entries {
            let _ = writeln!(s, "{u}:{h}");
        }
        s
    }

    fn insert(&mut self, user: &str, hash: String) {
        self.index.insert(user.to_string(), self.entries.len());
        self.entries.push((user.to_string(), hash));
    }
}

fn check_user(user: &str, line: usize) -> Result<(), HtpasswdError> {
    let bad = |why| HtpasswdError::BadUser {
        line,
        user: user.to_string(),
        why,
    };
    if user.is_empty() {
        return Err(bad("empty"));
    }
    if user.starts_with(ROBOT_PREFIX) {
        return Err(bad("the robot$ prefix is reserved for robot accounts"));
    }
    if user
        .chars()
        .any(|c| c == ':' || c.is_control() || c.is_whitespace())
    {
        return Err(bad("contains ':', a space or a control character"));
    }
    Ok(())
}

/// `None` for a well-formed bcrypt hash, else what kind of hash it looks like.
fn non_bcrypt_kind(hash: &str) -> Option<&'static str> {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    let bcrypt_ok = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
        && hash.len() == 60
        && hash[4..6].bytes().all(|c| c.is_ascii_digit())
        && &hash[6..7] == "$"
        && hash[7..].chars().all(b64);
    if bcrypt_ok {
        return None;
    }
    Some(if hash.starts_with("$apr1$") {
        "$apr1$ (MD5)"
    } else if hash.starts_with("{SHA}") {
        "{SHA} (SHA-1)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "$5$/$6$ (SHA-crypt)"
    } else if hash.starts_with("$2") {
        "a malformed bcrypt hash"
    } else {
        "crypt or plain text"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // `htpasswd -Bbn -C 5 alice s3cret` (apache2-utils), and `bob:hunter2` with the same tool's
    // output relabelled $2b$ (the variants differ only in the label).
    const ALICE: &str = "alice:$2y$05$lZraKy9zz8aqvyUe05uM1uHkfq3SlWdn/kbzz9k4T4HdI9RmeXTHW";
    const BOB: &str = "bob:$2b$05$5xm2am1XuJ9LiYABUlmSeuQQa3VSeAVBugjjPcJDmHg5uCeVrWtUG";

    #[test]
    fn parses_bcrypt_entries() {
        let h = Htpasswd::parse(&format!("# users\n{ALICE}\n\n{BOB}\n")).unwrap();
        assert_eq!(h.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(h.hash("alice").unwrap().starts_with("$2y$05$"));
        assert_eq!(h.hash("carol"), None);
        assert_eq!(h.render(), format!("{ALICE}\n{BOB}\n"));
        assert!(bcrypt::verify("s3cret", h.hash("alice").unwrap()).unwrap());
        assert!(bcrypt::verify("hunter2", h.hash("bob").unwrap()).unwrap());
        assert!(!bcrypt::verify("wrong", h.hash("bob").unwrap()).unwrap());
    }

    #[test]
    fn rejects_other_hash_kinds_naming_line_and_user() {
        for (entry, kind) in [
            (
                "carol:$apr1$t/jfFJ08$r6hAbIBaMJoSP/5lb4qT91",
                "$apr1$ (MD5)",
            ),
            ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "{SHA} (SHA-1)"),
            ("carol:plaintext", "crypt or plain text"),
            ("carol:$6$salt$hash", "$5$/$6$ (SHA-crypt)"),
            ("carol:$2y$05$short", "a malformed bcrypt hash"),
        ] {
            let err = Htpasswd::parse(&format!("{ALICE}\n{entry}\n")).unwrap_err();
            assert_eq!(
                err,
                HtpasswdError::UnsupportedHash {
                    line: 2,
                    user: "carol".into(),
                    kind
                }
            );
            let msg = err.to_string();
            assert!(msg.contains("line 2") && msg.contains("\"carol\""), "{msg}");
        }
    }

    #[test]
    fn rejects_malformed_duplicates_and_reserved_names() {
        assert_eq!(
            Htpasswd::parse("nocolon\n"),
            Err(HtpasswdError::Malformed { line: 1 })
        );
        assert!(matches!(
            Htpasswd::parse(&format!("{ALICE}\n{ALICE}\n")),
            Err(HtpasswdError::Duplicate { line: 2, .. })
        ));
        let robot = ALICE.replace("alice", "robot$ci");
        assert!(matches!(
            Htpasswd::parse(&robot),
            Err(HtpasswdError::BadUser { line: 1, .. })
        ));
    }

    #[test]
    fn set_and_remove_users() {
        let mut h = Htpasswd::parse(ALICE).unwrap();
        h.set_password("dave", "pw", 4).unwrap();
        h.set_password("alice", "new", 4).unwrap();
        assert_eq!(h.users().collect::<Vec<_>>(), ["alice", "dave"]);
        assert!(bcrypt::verify("new", h.hash("alice").unwrap()).unwrap());
        assert!(h.remove("alice"));
        assert!(!h.remove("alice"));
        assert_eq!(h.hash("dave").map(|x| &x[..4]), Some("$2b$"));
        let reparsed = Htpasswd::parse(&h.render()).unwrap();
        assert_eq!(reparsed, h);
        assert!(h.set_password("robot$x", "pw", 4).is_err());
        assert!(h.set_password("a:b", "pw", 4).is_err());
    }

    #[test]
    fn passwords_are_limited_to_what_bcrypt_reads() {
        assert_eq!(check_password(""), Err(HtpasswdError::EmptyPassword));
        assert_eq!(check_password(&"a".repeat(MAX_PASSWORD_BYTES)), Ok(()));
        let err = check_password(&"a".repeat(80)).unwrap_err();
        assert_eq!(err, HtpasswdError::PasswordTooLong { len: 80 });
        assert_eq!(
            err.to_string(),
            "passwords are limited to 72 bytes (bcrypt); this one has 80"
        );
        // bytes, not characters: 36 two-byte characters fit, 37 do not
        assert_eq!(check_password(&"é".repeat(36)), Ok(()));
        let long = "é".repeat(37);
        assert_eq!(
            check_password(&long),
            Err(HtpasswdError::PasswordTooLong { len: 74 })
        );
        let mut h = Htpasswd::default();
        assert!(h.set_password("alice", &long, 4).is_err());
        assert!(h.set_password("alice", "", 4).is_err());
        assert!(h.is_empty());
    }
}
