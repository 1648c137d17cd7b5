//! Why options were refused.

/// A value of [`crate::config::ServerOptions`] or [`crate::config::UpstreamOptions`]
/// that serde accepts but the machinery cannot use, found once when a server or an
/// upstream is built.
///
/// The message reads `field: reason`; as a [`proxy_core::ConfigError`] the field is
/// the path, relative to the options section.
///
/// ```
/// use proxy_codec::{config::ServerOptions, error::OptionsError};
/// use proxy_core::config::ByteSize;
///
/// let opts = ServerOptions { max_frame_bytes: ByteSize(0), ..ServerOptions::default() };
/// let err = opts.validate().unwrap_err();
/// assert_eq!(err, OptionsError::ZeroSize { field: "max_frame_bytes" });
/// let err = proxy_core::ConfigError::from(err).within("listeners[0].protocol_options.bolt");
/// assert_eq!(
///     err.to_string(),
///     "listeners[0].protocol_options.bolt.max_frame_bytes: must be at least 1 byte",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{}: {}", self.field(), self.reason())]
pub enum OptionsError {
    /// A size of 0 bytes: every frame would be refused. Sizes have no "off".
    ZeroSize {
        /// The field.
        field: &'static str,
    },
    /// A duration of zero: it would expire at once. An optional duration is off when
    /// its field is left out.
    ZeroDuration {
        /// The field.
        field: &'static str,
    },
}

impl OptionsError {
    /// The field refused, relative to the options section (`max_frame_bytes`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::ZeroSize { field } | Self::ZeroDuration { field } => field,
        }
    }

    /// Why, without the field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ZeroSize { .. } => "must be at least 1 byte",
            Self::ZeroDuration { .. } => "must be longer than 0s",
        }
    }
}

impl From<OptionsError> for proxy_core::ConfigError {
    fn from(e: OptionsError) -> Self {
        proxy_core::ConfigError::new(e.field(), e.reason())
    }
}
