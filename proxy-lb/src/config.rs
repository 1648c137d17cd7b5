//! Parsing of a balancer's config section (`clusters[].lb.config`).
//!
//! Each balancer module owns its serde struct (`MaglevConfig`, ...); this module turns
//! a YAML value into one, naming the field path of the first problem.

use serde::de::DeserializeOwned;

use crate::ConfigError;

/// Parses `value` into `T`. An absent section (`null`) parses as an empty mapping, so
/// that every field takes its default.
///
/// # Errors
/// [`ConfigError::Parse`] naming the field path (`hash_policy[0].type`).
pub(crate) fn parse<T: DeserializeOwned>(value: &serde_yaml::Value) -> Result<T, ConfigError> {
    let empty = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
    let value = if value.is_null() { &empty } else { value };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = e.path().to_string();
        let mut reason = e.into_inner().to_string();
        // serde names a missing field in the message of its parent: move it into the
        // path (`hash_policy: missing`, not `.: missing field `hash_policy``).
        if let Some(name) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            field = if field == "." {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
            reason = "missing (required)".to_owned();
        }
        ConfigError::Parse { field, reason }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(default)]
        size: u32,
    }

    #[test]
    fn null_takes_defaults() {
        let s: Sample = parse(&serde_yaml::Value::Null).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.size, 0);
    }

    #[test]
    fn errors_name_the_field() {
        let v: serde_yaml::Value = serde_yaml::from_str("size: nope").unwrap_or_default();
        let e = parse::<Sample>(&v).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.starts_with("size: ")),
            "{e:?}"
        );
        let v: serde_yaml::Value = serde_yaml::from_str("sise: 1").unwrap_or_default();
        let e = parse::<Sample>(&v).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("sise")), "{e:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Required {
        name: String,
    }

    #[test]
    fn missing_fields_are_named() {
        let e = parse::<Required>(&serde_yaml::Value::Null)
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("name: missing (required)"));
    }
}
