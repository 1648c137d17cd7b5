//! The one config model and its loading from YAML.
//!
//! [`Config`] is plain serde data; [`crate::snapshot::Snapshot::build`] validates it
//! whole and turns it into the immutable runtime objects the request path reads.

mod build;
mod model;
pub(crate) mod section;
mod units;

pub use model::*;
pub use section::{from_value, from_yaml, join_path, resolve_path, to_yaml, Section};
pub use units::{ByteSize, Percent};

use crate::ConfigError;

impl Config {
    /// Parses YAML, rejecting unknown fields and bad values with the field path.
    ///
    /// This checks the shape of the document only; cross-references (a route naming a
    /// missing cluster, an invalid regex) are checked when the snapshot is built.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field path and the reason.
    ///
    /// # Example
    /// ```
    /// let cfg = proxy_core::config::Config::from_yaml(r#"
    /// listeners:
    ///   - name: web
    ///     address: 127.0.0.1:8080
    ///     virtual_hosts:
    ///       - name: all
    ///         domains: ["*"]
    ///         routes:
    ///           - match: { path: { prefix: "/" } }
    ///             cluster: app
    /// clusters:
    ///   - name: app
    ///     endpoints: ["127.0.0.1:9000"]
    /// "#).unwrap();
    /// assert_eq!(cfg.listeners[0].name, "web");
    ///
    /// let err = proxy_core::config::Config::from_yaml("listeners: []\nbogus: 1\n").unwrap_err();
    /// assert!(err.to_string().contains("bogus"));
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        section::from_yaml(text).map_err(|e| {
            if e.path.is_empty() {
                ConfigError::new("config", e.reason)
            } else {
                e
            }
        })
    }

    /// Reads and parses the config file at `path`. Relative paths inside it
    /// (certificates, log files) resolve from the file's directory, whatever the
    /// working directory: [`Config::base_dir`] is set to it.
    ///
    /// # Errors
    /// The file cannot be read (the path is the file's), or a [`ConfigError`] naming
    /// the field.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let mut config = Self::from_yaml(&text)?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        config.base_dir = Some(dir);
        Ok(config)
    }

    /// Resolves a path named in this config: relative paths from
    /// [`Config::base_dir`] when set.
    pub fn resolve_path(&self, path: &std::path::Path) -> std::path::PathBuf {
        section::resolve_path(self.base_dir.as_deref(), path)
    }

    /// Serializes the config as pretty JSON (for `/config_dump`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests;
