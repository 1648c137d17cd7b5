//! Errors from loading Guomi keys, certificates and configs.

use std::path::PathBuf;

/// Why Guomi material or a Guomi config was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuomiError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A private key is not an SM2 key rustls can use.
    #[error("SM2 key: {0}")]
    Key(String),
    /// A certificate is unusable (does not parse, no SM2 key, key mismatch).
    #[error("SM2 certificate: {0}")]
    Certificate(String),
    /// rustls refused the config.
    #[error("rustls config")]
    Rustls(#[source] rustls::Error),
}
