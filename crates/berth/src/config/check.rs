//! `berth config check` and `berth config schema`: the effective configuration with secrets
//! masked, and the JSON Schema of the file.

use serde_yaml::Value;

use super::file::ConfigFile;
use super::{AuthSettings, DatabaseSettings, Loaded, StorageSettings};

const MASK: &str = "********";
/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &["secretkey", "secret", "password", "accesskey"];

/// The effective configuration as YAML, secrets masked, preceded by a summary and the warnings
/// as comments.
pub fn effective_yaml(loaded: &Loaded) -> Result<String, serde_yaml::Error> {
    let mut tree = serde_yaml::to_value(&loaded.file)?;
    mask(&mut tree, None);
    let s = &loaded.settings;
    let storage = match &s.storage {
        StorageSettings::Filesystem { root } => format!("filesystem at {}", root.display()),
        StorageSettings::S3(c) => format!(
            "s3 bucket {} ({})",
            c.bucket,
            c.region
                .as_deref()
                .unwrap_or(berth_storage::s3::DEFAULT_REGION)
        ),
    };
    let database = match &s.database {
        DatabaseSettings::Sqlite { path } => format!("embedded SQLite at {}", path.display()),
        DatabaseSettings::Postgres { url, pool_size } => {
            format!("PostgreSQL {} (pool {pool_size})", mask_url(url))
        }
    };
    let mut out = format!(
        "# listen: {}{}\n# storage: {storage}\n# metadata: {database}\n# access: {}\n",
        s.bind_addr(),
        if s.tls.is_some() { " (TLS)" } else { "" },
        access_summary(&s.auth)
    );
    for w in &loaded.warnings {
        out.push_str(&format!("# warning: {w}\n"));
    }
    out.push_str(&serde_yaml::to_string(&tree)?);
    Ok(out)
}

/// Who may do what, in one line: the implied registry:2 rule is shown, never left silent.
fn access_summary(a: &AuthSettings) -> String {
    if !a.enabled() {
        return "no authentication: anyone may pull, push and delete".into();
    }
    match &a.policy {
        None => "registry:2 compatibility (no `policy` section): every authenticated user may \
                 pull, push and delete everywhere, robots only what their own entries grant, \
                 anonymous callers nothing; add `policy` for rule-based, default-deny access"
            .into(),
        Some(p) => {
            let anon = if p.anonymous.pull.is_empty() {
                "none".to_owned()
            } else {
                p.anonymous
                    .pull
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "policy, default deny: {} rule(s), {} admin(s), anonymous pull: {anon}",
                p.rules.len(),
                p.admins.len()
            )
        }
    }
}

fn mask(v: &mut Value, key: Option<&str>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let k = k.as_str().map(str::to_ascii_lowercase);
                mask(child, k.as_deref());
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| mask(i, key)),
        Value::String(s) if key == Some("url") => *s = mask_url(s),
        Value::Null => {}
        _ if key.is_some_and(|k| SECRET_KEYS.contains(&k) || k == "authorization") => {
            *v = Value::String(MASK.into())
        }
        _ => {}
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:********@host/db`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}"),
        None => url.to_owned(),
    }
}

/// The JSON Schema of the config file, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_everywhere() {
        let loaded = super::super::from_text(
            "storage:\n  s3:\n    bucket: b\n    region: r\n    accesskey: AK\n    secretkey: SK\nhttp:\n  secret: topsecret\ndatabase:\n  url: postgres://berth:pw@db:5432/berth\nnotifications:\n  endpoints:\n    - name: a\n      url: http://h/x\n      headers:\n        Authorization: [Bearer abc]\n",
            Vec::new(),
        )
        .unwrap();
        let out = effective_yaml(&loaded).unwrap();
        for secret in ["AK", "SK", "topsecret", ":pw@", "Bearer abc"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(
            out.contains("postgres://berth:********@db:5432/berth"),
            "{out}"
        );
        assert!(out.contains("bucket: b"), "{out}");
        assert!(out.contains("# storage: s3 bucket b (r)"), "{out}");
    }

    #[test]
    fn states_who_may_do_what() {
        let access = |extra: &str| {
            let text = format!("storage:\n  filesystem:\n    rootdirectory: /d\n{extra}");
            let loaded = super::super::from_text(&text, Vec::new()).unwrap();
            let out = effective_yaml(&loaded).unwrap();
            let line = out.lines().find(|l| l.starts_with("# access: "));
            line.unwrap_or_default().to_owned()
        };
        assert!(access("").contains("no authentication"));
        let htpasswd = "auth:\n  htpasswd:\n    realm: R\n    path: /h\n";
        let compat = access(htpasswd);
        assert!(compat.contains("registry:2 compatibility"), "{compat}");
        assert!(compat.contains("every authenticated user"), "{compat}");
        assert_eq!(
            access(&format!("{htpasswd}policy: {{}}\n")),
            "# access: policy, default deny: 0 rule(s), 0 admin(s), anonymous pull: none"
        );
        let policy = format!(
            "{htpasswd}policy:\n  admins: [root]\n  anonymous:\n    pull: [\"public/**\"]\n  rules:\n    - users: [a]\n      repositories: [x]\n      actions: [pull]\n"
        );
        assert_eq!(
            access(&policy),
            "# access: policy, default deny: 1 rule(s), 1 admin(s), anonymous pull: public/**"
        );
    }

    #[test]
    fn schema_is_published_and_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.schema.json");
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == schema_json(),
            "docs/config.schema.json is stale; run `berth config schema > docs/config.schema.json`"
        );
    }
}
