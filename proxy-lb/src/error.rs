//! Errors of this crate.

/// A config section of this crate (a balancer, `zone_routing`, `traffic_steering`,
/// `outlier_detection`, `health_check`) was refused when building it from its typed
/// config.
///
/// It names the field path inside the section (`table_size: 65536 is not prime`);
/// converted into a [`proxy_core::ConfigError`] it keeps that path, which proxy-core
/// prefixes with the section's own (`clusters[0].lb.config.table_size`). Shape
/// mistakes (a wrong type, an unknown or missing field) are refused earlier, by
/// [`proxy_core::config::Section::parse`], in the same `path: reason` form.
///
/// # Example
/// ```
/// use proxy_lb::{hash_policy::HashPolicyConfig, maglev::{Maglev, MaglevConfig}};
///
/// let cfg = MaglevConfig { table_size: 65536, hash_policy: vec![HashPolicyConfig::SourceIp] };
/// let err = Maglev::new(&cfg).unwrap_err();
/// assert_eq!(err.field(), "table_size");
/// let core: proxy_core::ConfigError = err.into();
/// assert_eq!(core.within("clusters[0].lb.config").to_string(),
///            "clusters[0].lb.config.table_size: 65536 is not prime");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field holds a value that the capability refuses.
    #[error("{}", display(field, reason))]
    Invalid {
        /// The field path inside the section (`hash_policy[1].cookie.name`); empty
        /// for the section itself.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

fn display(field: &str, reason: &str) -> String {
    if field.is_empty() {
        reason.to_owned()
    } else {
        format!("{field}: {reason}")
    }
}

impl ConfigError {
    /// A refused value of `field`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error seen from `prefix` (`readmission.probe` + `http.path`).
    #[must_use]
    pub(crate) fn within(self, prefix: &str) -> Self {
        let Self::Invalid { field, reason } = self;
        let field = if field.is_empty() {
            prefix.to_owned()
        } else if field.starts_with('[') {
            format!("{prefix}{field}")
        } else {
            format!("{prefix}.{field}")
        };
        Self::Invalid { field, reason }
    }

    /// The field path the error is about, relative to the section.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } => field,
        }
    }

    /// Why the value is refused.
    pub fn reason(&self) -> &str {
        match self {
            Self::Invalid { reason, .. } => reason,
        }
    }
}

impl From<ConfigError> for proxy_core::ConfigError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid { field, reason } => proxy_core::ConfigError::new(field, reason),
        }
    }
}

/// A section that did not parse, as this crate's error (the path kept).
impl From<proxy_core::ConfigError> for ConfigError {
    fn from(e: proxy_core::ConfigError) -> Self {
        Self::Invalid {
            field: e.path,
            reason: e.reason,
        }
    }
}
