//! The one parse helper: YAML text and capability sections into typed config, with
//! the same field-path errors for every crate.
//!
//! A capability's section (`http_filters[].config`, `lb.config`, ...) is carried by
//! core as a [`Section`]: plain data, parsed by the capability's own factory with
//! [`Section::parse`]. Choices among several are one-key maps (`path: {prefix: /}`)
//! and unit choices snake_case strings, which is how serde reads externally tagged
//! enums from this data model: no special handling is needed by any crate.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ConfigError;

/// A capability's config section, carried by core and parsed by the capability.
///
/// Built from YAML by [`from_yaml`], from a control plane's typed data by
/// [`Section::from_typed`], or empty. Absent (`null`) parses as an empty mapping, so
/// that every field takes its default.
///
/// # Example
/// ```
/// use proxy_core::config::Section;
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Limits { #[serde(default)] max_keys: u32 }
///
/// let section: Section = proxy_core::config::from_yaml("max_keys: 10").unwrap();
/// assert_eq!(section.parse::<Limits>().unwrap().max_keys, 10);
/// assert_eq!(Section::default().parse::<Limits>().unwrap().max_keys, 0);
///
/// let bad: Section = proxy_core::config::from_yaml("max_keys: -1").unwrap();
/// let err = bad.parse::<Limits>().unwrap_err();
/// assert_eq!(err.path, "max_keys");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Section(serde_json::Value);

impl Section {
    /// An absent section: every field takes its default.
    pub const fn empty() -> Self {
        Self(serde_json::Value::Null)
    }

    /// A section holding `value`.
    pub fn from_value(value: serde_json::Value) -> Self {
        Self(value)
    }

    /// The section of a typed config, for code (a control plane, a test) that builds
    /// the config model without YAML.
    ///
    /// # Errors
    /// A value that cannot be represented (a map with non-string keys).
    pub fn from_typed<T: Serialize>(value: &T) -> Result<Self, ConfigError> {
        serde_json::to_value(value)
            .map(Self)
            .map_err(|e| ConfigError::new("", e))
    }

    /// Whether the section is absent.
    pub fn is_null(&self) -> bool {
        self.0.is_null()
    }

    /// The section's data.
    pub fn as_value(&self) -> &serde_json::Value {
        &self.0
    }

    /// Parses the section into `T`; absent parses as an empty mapping.
    ///
    /// # Errors
    /// A [`ConfigError`] whose path is relative to the section (`hash_policy[0].header`),
    /// which the caller prefixes with the section's own path.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        if self.0.is_null() {
            return from_value(&serde_json::Value::Object(serde_json::Map::new()));
        }
        from_value(&self.0)
    }
}

/// Parses YAML text into `T`, naming the field path of the first problem.
///
/// Unknown fields are refused where `T` says `deny_unknown_fields`; duplicate keys
/// and unbounded alias expansion are refused by the YAML parser.
///
/// # Errors
/// A [`ConfigError`] with the field path (empty for the document itself) and the
/// reason.
///
/// # Example
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(rename_all = "snake_case")]
/// enum PathMatch { Exact(String), Prefix(String) }
/// #[derive(Debug, serde::Deserialize)]
/// struct Route { path: PathMatch }
///
/// let r: Route = proxy_core::config::from_yaml("path: {prefix: /api}").unwrap();
/// assert!(matches!(r.path, PathMatch::Prefix(p) if p == "/api"));
/// let err = proxy_core::config::from_yaml::<Route>("path: {suffix: /api}").unwrap_err();
/// assert_eq!(err.path, "path");
/// ```
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let value: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::new("", yaml_reason(&e)))?
    };
    from_value(&value)
}

/// Deserializes `T` from config data, naming the field path of the first problem:
/// the one helper behind [`from_yaml`] and [`Section::parse`].
///
/// # Errors
/// A [`ConfigError`] with the field path and the reason.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let mut reason = e.into_inner().to_string();
        // serde names a missing field in the message of its parent: move it into the
        // path (`cluster: missing (required)`, not `.: missing field `cluster``).
        if let Some(name) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            path = join_path(&path, name);
            reason = "missing (required)".to_owned();
        }
        ConfigError::new(path, reason)
    })
}

/// Writes config data as YAML that [`from_yaml`] reads back.
///
/// # Errors
/// A value YAML cannot represent.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, ConfigError> {
    serde_saphyr::to_string(value).map_err(|e| ConfigError::new("", e))
}

/// The YAML parser's message on one line (its snippets span several).
fn yaml_reason(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    format!("invalid YAML: {first}")
}

/// A field path one level down: `base.name`, or `name` alone when `base` is empty;
/// `base[i]` for an index. The one way field paths are built for errors.
///
/// # Example
/// ```
/// use proxy_core::config::join_path;
/// assert_eq!(join_path("roots", "files"), "roots.files");
/// assert_eq!(join_path("", "cert"), "cert");
/// assert_eq!(join_path("files", "[1]"), "files[1]");
/// ```
pub fn join_path(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else if name.is_empty() {
        base.to_owned()
    } else if name.starts_with('[') {
        format!("{base}{name}")
    } else {
        format!("{base}.{name}")
    }
}

/// Resolves `path` against `base` (a config file's directory) unless it is absolute.
pub fn resolve_path(base: Option<&Path>, path: &Path) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(default)]
        size: u32,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    #[test]
    fn paths_name_the_field() {
        let e = from_yaml::<Sample>("size: nope").unwrap_err();
        assert_eq!(e.path, "size");
        let e = from_yaml::<Sample>("items: [{name: a}, {nmae: b}]").unwrap_err();
        assert_eq!(e.path, "items[1].nmae", "{e}");
        assert!(e.reason.contains("nmae"), "{e}");
        let e = from_yaml::<Sample>("items: [{}]").unwrap_err();
        assert_eq!(e.to_string(), "items[0].name: missing (required)");
    }

    #[test]
    fn bad_yaml_is_an_error_not_a_panic() {
        for text in ["a: [", "a: b: c", "{", "- x\ny: 1", "a: &x [*x]", "\t- :"] {
            assert!(from_yaml::<serde_json::Value>(text).is_err(), "{text:?}");
        }
        assert!(
            from_yaml::<Sample>("size: 1\nsize: 2").is_err(),
            "duplicate keys"
        );
    }

    #[test]
    fn sections_prefix_and_default() {
        let s: Section = from_yaml("size: x").unwrap();
        let e = s.parse::<Sample>().unwrap_err().within("lb.config");
        assert_eq!(
            e.to_string(),
            "lb.config.size: invalid type: string \"x\", expected u32"
        );
        assert_eq!(Section::empty().parse::<Sample>().unwrap().size, 0);
    }

    #[test]
    fn relative_paths_resolve_from_the_base() {
        let base = Path::new("/etc/proxy");
        assert_eq!(
            resolve_path(Some(base), Path::new("certs/a.pem")),
            Path::new("/etc/proxy/certs/a.pem")
        );
        assert_eq!(
            resolve_path(Some(base), Path::new("/a.pem")),
            Path::new("/a.pem")
        );
        assert_eq!(resolve_path(None, Path::new("a.pem")), Path::new("a.pem"));
    }
}
