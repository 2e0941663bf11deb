//! Configuration: registry:2's `config.yml`, `REGISTRY_*` overrides, and Berth's own sections.
//!
//! Loading happens in two steps (DESIGN decision 9): the YAML text becomes a tree, `REGISTRY_*`
//! variables are applied to the tree ([`env`]), and the tree is deserialized into the typed
//! [`file::ConfigFile`]. Keys serde does not consume are collected and become warnings that name
//! each key (and the variable, when one set it). Type errors name the key path. Then
//! [`validate`] turns the file into one checked [`Settings`], the only thing the rest of the
//! binary reads. Why a tree first: overrides must work for keys the file does not mention, and
//! `REGISTRY_STORAGE=s3` must be able to drop the file's `filesystem` section.

mod access;
mod check;
pub mod de;
pub mod env;
pub mod file;
mod settings;
mod validate;
mod warnings;

use std::path::{Path, PathBuf};

pub use check::{effective_yaml, schema_json};
pub use file::ConfigFile;
pub use settings::*;

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
    /// The YAML is malformed.
    #[error("invalid config{}: {message}", at(path))]
    Syntax {
        /// File path, if any.
        path: Option<PathBuf>,
        /// Parser message with line and column.
        message: String,
    },
    /// A value has the wrong type or is out of range.
    #[error("invalid config value for {key}: {message}")]
    Value {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    pub(crate) fn value(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Value {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// A key Berth read but will not act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Dotted key path (`redis.addr`), or the variable that set it.
    pub key: String,
    /// One sentence for the operator.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The outcome of loading: the settings, the file as understood, and the warnings.
#[derive(Debug)]
pub struct Loaded {
    /// Checked settings.
    pub settings: Settings,
    /// The typed file after overrides (for `berth config check`).
    pub file: ConfigFile,
    /// Keys that were ignored, one warning each.
    pub warnings: Vec<Warning>,
}

/// Loads from an optional file and the given environment.
pub fn load(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.into(),
            source,
        })?,
        None => String::new(),
    };
    from_text(&text, vars).map_err(|e| match e {
        ConfigError::Syntax { message, .. } => ConfigError::Syntax {
            path: path.map(Into::into),
            message,
        },
        other => other,
    })
}

/// Loads from YAML text and the given environment.
pub fn from_text(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let mut tree = parse_tree(text)?;
    let overrides = env::apply(&mut tree, vars);
    let mut ignored = Vec::new();
    let file: ConfigFile = {
        let mut record = |p: serde_ignored::Path| ignored.push(p.to_string());
        let de = serde_ignored::Deserializer::new(tree, &mut record);
        serde_path_to_error::deserialize(de).map_err(|e| {
            ConfigError::value(&display_path(&e.path().to_string()), e.inner().to_string())
        })?
    };
    let mut warnings = warnings::for_ignored(&ignored, &overrides);
    let settings = validate::settings(&file, &mut warnings)?;
    Ok(Loaded {
        settings,
        file,
        warnings,
    })
}

fn parse_tree(text: &str) -> Result<serde_yaml::Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(serde_yaml::Value::Mapping(Default::default()));
    }
    let tree: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: None,
        message: e.to_string(),
    })?;
    match tree {
        serde_yaml::Value::Mapping(_) => Ok(tree),
        serde_yaml::Value::Null => Ok(serde_yaml::Value::Mapping(Default::default())),
        _ => Err(ConfigError::Syntax {
            path: None,
            message: "the top level must be a mapping of sections".into(),
        }),
    }
}

/// serde_path_to_error writes `?` for an unknown position; show the root as `(top level)`.
fn display_path(p: &str) -> String {
    if p.is_empty() || p == "." {
        "(top level)".into()
    } else {
        p.to_owned()
    }
}

#[cfg(test)]
mod tests;
