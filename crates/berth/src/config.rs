//! Configuration: registry:2's `config.yml` shape.
//!
//! Today Berth reads `http.addr`, `storage.filesystem.rootdirectory` and `storage.delete.enabled`;
//! other keys are accepted in the same file and will gain meaning as features land (full registry:2
//! compatibility, with warnings for unimplemented keys, is its own piece of work).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value has the wrong type.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Cause (names the key path and line).
        source: serde_yaml::Error,
    },
    /// A value is out of range.
    #[error("invalid config value for {key}: {message}")]
    Value {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    http: Http,
    #[serde(default)]
    storage: Storage,
}

#[derive(Deserialize, Default)]
struct Http {
    addr: Option<String>,
}

#[derive(Deserialize, Default)]
struct Storage {
    filesystem: Option<Filesystem>,
    delete: Option<Delete>,
}

#[derive(Deserialize)]
struct Filesystem {
    rootdirectory: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Delete {
    #[serde(default)]
    enabled: bool,
}

/// Validated settings the server runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Listen address as written (`:5000`, `127.0.0.1:5000`, `localhost:5000`).
    pub addr: String,
    /// Storage root for blobs, uploads and the embedded metadata database.
    pub root: PathBuf,
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            addr: ":5000".into(),
            root: PathBuf::from("./data"),
            delete_enabled: false,
        }
    }
}

impl Settings {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
                path: PathBuf::new(),
                source,
            })?
        };
        let d = Settings::default();
        let addr = file.http.addr.unwrap_or(d.addr);
        if !addr.contains(':') {
            return Err(ConfigError::Value {
                key: "http.addr",
                message: format!("{addr:?} has no port"),
            });
        }
        let root = file
            .storage
            .filesystem
            .and_then(|f| f.rootdirectory)
            .unwrap_or(d.root);
        let delete_enabled = file.storage.delete.is_some_and(|x| x.enabled);
        Ok(Settings {
            addr,
            root,
            delete_enabled,
        })
    }

    /// The address to bind: a leading `:` means all interfaces, as in registry:2.
    pub fn bind_addr(&self) -> String {
        match self.addr.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.addr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registry2_shape() {
        let s = Settings::from_yaml(
            "version: 0.1\nlog:\n  level: debug\nhttp:\n  addr: 127.0.0.1:5001\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                addr: "127.0.0.1:5001".into(),
                root: "/var/lib/registry".into(),
                delete_enabled: true
            }
        );
    }

    #[test]
    fn defaults_and_errors() {
        let s = Settings::from_yaml("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.bind_addr(), "0.0.0.0:5000");
        assert!(matches!(
            Settings::from_yaml("http:\n  addr: 5000\n"),
            Err(ConfigError::Value {
                key: "http.addr",
                ..
            })
        ));
        assert!(matches!(
            Settings::from_yaml("storage:\n  delete:\n    enabled: maybe\n"),
            Err(ConfigError::Parse { .. })
        ));
    }
}
