//! Errors of this crate.

/// A balancer's config section was refused at load.
///
/// Its text names the field path inside the section (`table_size: 65536 is not
/// prime`); proxy-core prefixes it with the section's own path
/// (`clusters[0].lb.config`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The section does not parse: a wrong type, an unknown or missing field.
    #[error("{field}: {reason}")]
    Parse {
        /// The field path (`.` for the section itself).
        field: String,
        /// What serde said.
        reason: String,
    },
    /// A field parsed but holds a value the balancer refuses.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

impl ConfigError {
    /// A refused value of `field`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field path the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::Parse { field, .. } | Self::Invalid { field, .. } => field,
        }
    }
}
