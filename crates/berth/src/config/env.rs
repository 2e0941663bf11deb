//! `REGISTRY_*` environment overrides, applied the way registry:2 applies them.
//!
//! `REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd` sets `auth.htpasswd.path`: the name after the
//! prefix is split on `_` and lower-cased into a key path (config keys contain no underscores,
//! Berth's own included). The value is read as a YAML scalar (or YAML document), so `"true"` is a
//! bool and `5000` a number; typed fields accept either spelling. `REGISTRY_STORAGE=s3` and
//! `REGISTRY_AUTH=htpasswd` select the storage driver or auth kind, dropping the others, as the
//! usual registry:2 docker-compose files rely on.

use serde_yaml::{Mapping, Value};

/// The prefix registry:2 uses.
pub const PREFIX: &str = "REGISTRY_";

/// Storage driver names registry:2 knows (sections of `storage` that are not options).
const STORAGE_DRIVERS: &[&str] = &[
    "filesystem",
    "s3",
    "inmemory",
    "azure",
    "gcs",
    "swift",
    "oss",
];
/// Auth kinds registry:2 knows.
const AUTH_KINDS: &[&str] = &["htpasswd", "token", "silly"];

/// One applied override: the variable and the key path it set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// Variable name, e.g. `REGISTRY_HTTP_ADDR`.
    pub var: String,
    /// Dotted key path, e.g. `http.addr`.
    pub path: String,
}

/// Applies every `REGISTRY_*` variable in `vars` to `root`, in name order (so `REGISTRY_STORAGE`
/// comes before `REGISTRY_STORAGE_S3_BUCKET`).
pub fn apply(root: &mut Value, vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.len() > PREFIX.len() && k.starts_with(PREFIX))
        .collect();
    vars.sort();
    vars.into_iter()
        .filter_map(|(var, value)| apply_one(root, var, &value))
        .collect()
}

fn apply_one(root: &mut Value, var: String, value: &str) -> Option<Override> {
    let path: Vec<String> = var[PREFIX.len()..]
        .split('_')
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    let parsed = parse_value(value);
    match (path.as_slice(), &parsed) {
        ([section], Value::String(kind)) if section == "storage" => {
            select(root, section, &kind.to_ascii_lowercase(), STORAGE_DRIVERS)
        }
        ([section], Value::String(kind)) if section == "auth" => {
            select(root, section, &kind.to_ascii_lowercase(), AUTH_KINDS)
        }
        _ => set(root, &path, parsed),
    }
    Some(Override {
        var,
        path: path.join("."),
    })
}

fn parse_value(value: &str) -> Value {
    if value.is_empty() {
        return Value::String(String::new());
    }
    match serde_yaml::from_str::<Value>(value) {
        Ok(Value::Null) if !value.trim().eq_ignore_ascii_case("null") && value.trim() != "~" => {
            Value::String(value.to_owned())
        }
        Ok(v) => v,
        Err(_) => Value::String(value.to_owned()),
    }
}

/// `REGISTRY_STORAGE=s3`: keep (or create) `storage.s3`, drop the other drivers.
fn select(root: &mut Value, section: &str, kind: &str, kinds: &[&str]) {
    let map = child_map(root, section);
    let keys: Vec<Value> = map
        .keys()
        .filter(|k| {
            k.as_str().is_some_and(|k| {
                let k = k.to_ascii_lowercase();
                kinds.contains(&k.as_str()) && k != kind
            })
        })
        .cloned()
        .collect();
    for k in keys {
        map.remove(&k);
    }
    child_map(map, kind);
}

fn set(root: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for key in parents {
        let map = ensure_map(node);
        let k = existing_key(map, key);
        node = map.entry(k).or_insert(Value::Null);
    }
    let map = ensure_map(node);
    let k = existing_key(map, last);
    map.insert(k, value);
}

/// The mapping under `key` in `node` (created, or replacing a scalar/null).
fn child_map<'a, N: AsMapping>(node: &'a mut N, key: &str) -> &'a mut Mapping {
    let map = node.as_mapping_mut();
    let k = existing_key(map, key);
    ensure_map(map.entry(k).or_insert(Value::Null))
}

trait AsMapping {
    fn as_mapping_mut(&mut self) -> &mut Mapping;
}

impl AsMapping for Value {
    fn as_mapping_mut(&mut self) -> &mut Mapping {
        ensure_map(self)
    }
}

impl AsMapping for Mapping {
    fn as_mapping_mut(&mut self) -> &mut Mapping {
        self
    }
}

fn ensure_map(node: &mut Value) -> &mut Mapping {
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Mapping(m) => m,
        _ => unreachable!("just replaced with a mapping"),
    }
}

/// The key as already spelled in the file (matching case-insensitively), or `key` itself.
fn existing_key(map: &Mapping, key: &str) -> Value {
    map.keys()
        .find(|k| k.as_str().is_some_and(|s| s.eq_ignore_ascii_case(key)))
        .cloned()
        .unwrap_or_else(|| Value::String(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, vars: &[(&str, &str)]) -> Value {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        apply(
            &mut v,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        v
    }

    #[test]
    fn sets_nested_keys_and_types() {
        let v = run(
            "http:\n  addr: :5000\n",
            &[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("REGISTRY_HTTP_SECRET", "12345"),
                ("PATH", "/bin"),
            ],
        );
        assert_eq!(v["http"]["addr"], Value::from("127.0.0.1:6000"));
        assert_eq!(v["storage"]["delete"]["enabled"], Value::Bool(true));
        assert_eq!(v["http"]["secret"], Value::from(12345));
    }

    #[test]
    fn selects_driver_and_keeps_options() {
        let v = run(
            "storage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\n",
            &[
                ("REGISTRY_STORAGE", "s3"),
                ("REGISTRY_STORAGE_S3_BUCKET", "docker-registry"),
                ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
            ],
        );
        let storage = v["storage"].as_mapping().unwrap();
        assert!(storage.get("filesystem").is_none());
        assert_eq!(v["storage"]["s3"]["bucket"], Value::from("docker-registry"));
        assert_eq!(v["storage"]["s3"]["forcepathstyle"], Value::Bool(true));
        assert_eq!(v["storage"]["delete"]["enabled"], Value::Bool(true));
    }

    #[test]
    fn auth_kind_and_case_insensitive_keys() {
        let v = run(
            "Auth:\n  token:\n    realm: x\n",
            &[
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Docker Registry"),
            ],
        );
        assert!(v["Auth"].as_mapping().unwrap().get("token").is_none());
        assert_eq!(
            v["Auth"]["htpasswd"]["realm"],
            Value::from("Docker Registry")
        );
    }

    #[test]
    fn replaces_null_sections_and_ignores_empty_segments() {
        let v = run(
            "storage:\n  filesystem:\n",
            &[
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
                ("REGISTRY__X", "1"),
                ("REGISTRY_", "1"),
            ],
        );
        assert_eq!(
            v["storage"]["filesystem"]["rootdirectory"],
            Value::from("/data")
        );
        assert_eq!(v.as_mapping().unwrap().len(), 1);
    }

    #[test]
    fn empty_and_odd_values_stay_strings() {
        assert_eq!(parse_value(""), Value::from(""));
        assert_eq!(parse_value("a: [b"), Value::from("a: [b"));
        assert_eq!(parse_value(":5000"), Value::from(":5000"));
        assert_eq!(parse_value("null"), Value::Null);
    }
}
