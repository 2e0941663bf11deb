//! `berth kube-secret`: prints a Kubernetes image pull Secret (`kubernetes.io/dockerconfigjson`).
//!
//! Design decision: the decoded `.dockerconfigjson` is byte-for-byte what
//! `kubectl create secret docker-registry NAME --docker-server=S --docker-username=U
//! --docker-password=P [--docker-email=E] --dry-run=client -o yaml` produces (checked against kubectl
//! 1.27 to 1.33; `scripts/helm-check` compares the two on every run). kubectl marshals
//! `{"auths":{S:{"username","password","email"(omitempty),"auth"}}}` with Go's `encoding/json`, which
//! escapes `<`, `>`, `&`, U+2028 and U+2029 as well as control characters. `serde_json` does not, so
//! the few lines of JSON are written here by [`go_json_string`] instead: a user who diffs our Secret
//! against kubectl's sees no difference, and kubelet/containerd parse both the same way.
//!
//! The YAML around it is written by hand too: every value is either base64 (a closed alphabet) or a
//! name validated as a DNS-1123 subdomain/label, so nothing needs quoting. Key order follows kubectl's
//! (`apiVersion`, `data`, `kind`, `metadata`, `type`); kubectl's `creationTimestamp: null` is left out.

use std::fmt::Write as _;
use std::io::{Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Flags of `berth kube-secret`, named after `kubectl create secret docker-registry`'s.
#[derive(clap::Args)]
pub struct Args {
    /// Registry host[:port] exactly as image references name it (`registry.example.com:5000`).
    #[arg(long)]
    server: String,
    /// Registry user.
    #[arg(long)]
    username: String,
    /// Password or token (visible in the process list; prefer --password-stdin).
    #[arg(
        long,
        required_unless_present = "password_stdin",
        conflicts_with = "password_stdin"
    )]
    password: Option<String>,
    /// Read the password from stdin (one trailing newline is dropped).
    #[arg(long)]
    password_stdin: bool,
    /// Secret name.
    #[arg(long, default_value = "berth-pull-secret")]
    name: String,
    /// Namespace written into the Secret (default: none, i.e. kubectl's current namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// E-mail stored next to the credentials (optional; registries ignore it).
    #[arg(long)]
    email: Option<String>,
}

/// Runs `berth kube-secret`: validates the flags and prints the Secret on stdout.
pub fn run(args: Args) -> Result<(), KubeSecretError> {
    let password = match args.password {
        Some(p) => p,
        None => read_password(std::io::stdin().lock())?,
    };
    let secret = PullSecret {
        name: args.name,
        namespace: args.namespace,
        server: args.server,
        username: args.username,
        password,
        email: args.email,
    };
    secret.validate()?;
    let mut out = std::io::stdout().lock();
    out.write_all(secret.to_yaml().as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Why the Secret could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum KubeSecretError {
    /// A flag value is not acceptable.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag (`--name`, `--server`, …).
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Reading the password from stdin or writing the Secret to stdout failed.
    #[error("kube-secret: {0}")]
    Io(#[from] std::io::Error),
}

/// What goes into the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSecret {
    /// Secret name (DNS-1123 subdomain).
    pub name: String,
    /// Namespace (DNS-1123 label); `None` leaves it to `kubectl apply -n`.
    pub namespace: Option<String>,
    /// Registry as the kubelet sees it in image references (`registry.example.com:5000`).
    pub server: String,
    /// Registry user.
    pub username: String,
    /// Its password or token.
    pub password: String,
    /// Optional e-mail (kept for parity with kubectl; registries ignore it).
    pub email: Option<String>,
}

impl PullSecret {
    /// Checks every field the way the API server (names) and kubectl (credentials) would.
    pub fn validate(&self) -> Result<(), KubeSecretError> {
        check_dns_subdomain("--name", &self.name)?;
        if let Some(ns) = &self.namespace {
            check_dns_label("--namespace", ns)?;
        }
        for (flag, value) in [
            ("--server", &self.server),
            ("--username", &self.username),
            ("--password", &self.password),
        ] {
            if value.is_empty() {
                return Err(invalid(flag, "must not be empty"));
            }
        }
        if self.username.contains(':') {
            // The `auth` field is base64("user:password"); a colon in the user cannot round-trip.
            return Err(invalid("--username", "must not contain ':'"));
        }
        Ok(())
    }

    /// The `.dockerconfigjson` document, exactly as kubectl marshals it.
    pub fn docker_config_json(&self) -> String {
        let auth = B64.encode(format!("{}:{}", self.username, self.password));
        let mut entry = format!(
            "{{\"username\":{},\"password\":{}",
            go_json_string(&self.username),
            go_json_string(&self.password)
        );
        if let Some(email) = self.email.as_deref().filter(|e| !e.is_empty()) {
            let _ = write!(entry, ",\"email\":{}", go_json_string(email));
        }
        let _ = write!(entry, ",\"auth\":{}}}", go_json_string(&auth));
        format!("{{\"auths\":{{{}:{entry}}}}}", go_json_string(&self.server))
    }

    /// The Secret manifest as YAML, ready for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> String {
        let data = B64.encode(self.docker_config_json());
        let mut out = format!(
            "apiVersion: v1\ndata:\n  .dockerconfigjson: {data}\nkind: Secret\nmetadata:\n  name: {}\n",
            self.name
        );
        if let Some(ns) = &self.namespace {
            let _ = writeln!(out, "  namespace: {ns}");
        }
        out.push_str("type: kubernetes.io/dockerconfigjson\n");
        out
    }
}

/// Reads a password from `input` the way `docker login --password-stdin` does: everything, minus
/// one trailing `\n` and then one trailing `\r`.
pub fn read_password(mut input: impl Read) -> Result<String, KubeSecretError> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_owned())
}

/// A JSON string literal as Go's `encoding/json` writes it (HTML-safe escaping on).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn invalid(flag: &'static str, message: impl Into<String>) -> KubeSecretError {
    KubeSecretError::Invalid {
        flag,
        message: message.into(),
    }
}

/// RFC 1123 label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn check_dns_label(flag: &'static str, s: &str) -> Result<(), KubeSecretError> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            format!("{s:?} is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)"),
        ))
    }
}

fn check_dns_subdomain(flag: &'static str, s: &str) -> Result<(), KubeSecretError> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            format!("{s:?} is not a DNS-1123 subdomain (lower-case letters, digits, '-', '.')"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(server: &str, user: &str, pass: &str) -> PullSecret {
        PullSecret {
            name: "regcred".into(),
            namespace: None,
            server: server.into(),
            username: user.into(),
            password: pass.into(),
            email: None,
        }
    }

    // Expected strings below are kubectl 1.32's output for the same flags (see the module docs).

    #[test]
    fn yaml_matches_kubectl() {
        let s = secret("registry.example.com:5000", "alice", "p@ss:wörd\"x");
        assert_eq!(
            s.to_yaml(),
            "apiVersion: v1\ndata:\n  .dockerconfigjson: eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlLmNvbTo1MDAwIjp7InVzZXJuYW1lIjoiYWxpY2UiLCJwYXNzd29yZCI6InBAc3M6d8O2cmRcIngiLCJhdXRoIjoiWVd4cFkyVTZjRUJ6Y3pwM3c3WnlaQ0o0In19fQ==\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\n"
        );
    }

    #[test]
    fn namespace_and_email() {
        let mut s = secret("s", "u", "p");
        s.namespace = Some("ns1".into());
        s.email = Some("a@b.c".into());
        assert_eq!(
            s.docker_config_json(),
            r#"{"auths":{"s":{"username":"u","password":"p","email":"a@b.c","auth":"dTpw"}}}"#
        );
        assert!(s.to_yaml().ends_with(
            "metadata:\n  name: regcred\n  namespace: ns1\ntype: kubernetes.io/dockerconfigjson\n"
        ));
        s.email = Some(String::new());
        assert_eq!(
            s.docker_config_json(),
            r#"{"auths":{"s":{"username":"u","password":"p","auth":"dTpw"}}}"#
        );
    }

    #[test]
    fn escapes_like_go() {
        let s = secret("https://a.b/<x>&", "u<>&", "p\u{2028}\t\u{1}é");
        assert_eq!(
            s.docker_config_json(),
            r#"{"auths":{"https://a.b/\u003cx\u003e\u0026":{"username":"u\u003c\u003e\u0026","password":"p\u2028\t\u0001é","auth":"dTw+Jjpw4oCoCQHDqQ=="}}}"#
        );
        let s = secret("s", "u", "a\u{8}b\u{c}c\nd\re\u{7f}f\\g\"h\u{2029}i/");
        assert_eq!(
            s.docker_config_json(),
            "{\"auths\":{\"s\":{\"username\":\"u\",\"password\":\"a\\bb\\fc\\nd\\re\u{7f}f\\\\g\\\"h\\u2029i/\",\"auth\":\"dTphCGIMYwpkDWV/ZlxnImjigKlpLw==\"}}}"
        );
    }

    #[test]
    fn validation() {
        assert!(secret("s", "u", "p").validate().is_ok());
        for (s, flag) in [
            (secret("", "u", "p"), "--server"),
            (secret("s", "", "p"), "--username"),
            (secret("s", "u", ""), "--password"),
            (secret("s", "a:b", "p"), "--username"),
        ] {
            assert!(
                matches!(s.validate(), Err(KubeSecretError::Invalid { flag: f, .. }) if f == flag),
                "{flag}"
            );
        }
        let mut s = secret("s", "u", "p");
        for bad in [
            "",
            "Regcred",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a\nb: c",
            &"a".repeat(254),
        ] {
            s.name = bad.into();
            assert!(s.validate().is_err(), "{bad:?}");
        }
        for good in ["a", "reg-cred", "berth.pull.0", &"a".repeat(63)] {
            s.name = good.into();
            assert!(s.validate().is_ok(), "{good:?}");
        }
        s.name = "ok".into();
        for bad in ["a.b", "", "UP", &"a".repeat(64)] {
            s.namespace = Some(bad.into());
            assert!(s.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_from_stdin_drops_one_line_ending() {
        let read = |s: &str| read_password(s.as_bytes()).unwrap();
        assert_eq!(read("secret\n"), "secret");
        assert_eq!(read("secret\r\n"), "secret");
        assert_eq!(read("secret"), "secret");
        assert_eq!(read("secret\n\n"), "secret\n");
        assert_eq!(read(" sp ace \n"), " sp ace ");
    }
}
