//! The one config model and its loading from YAML.
//!
//! [`Config`] is plain serde data; [`crate::snapshot::Snapshot::build`] validates it
//! whole and turns it into the immutable runtime objects the request path reads.

mod model;

pub use model::*;

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
        let de = serde_yaml::Deserializer::from_str(text);
        let mut track = serde_path_to_error::Track::new();
        // Enums are written as one-key maps (`path: { prefix: "/" }`) rather than tags.
        let result = serde_yaml::with::singleton_map_recursive::deserialize(
            serde_path_to_error::Deserializer::new(de, &mut track),
        );
        result.map_err(|e| {
            let path = track.path().to_string();
            let path = if path == "." {
                "config".to_owned()
            } else {
                path
            };
            // serde_yaml prefixes its message with the path it knows; keep one copy.
            let message = e.to_string();
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_owned)
                .unwrap_or(message);
            ConfigError::new(path, message)
        })
    }

    /// Serializes the config as pretty JSON (for `/config_dump`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests;
