//! Errors of the connection ID codec and generators.

/// Why a connection ID format, an encoding or a generator could not be made.
///
/// # Example
/// ```
/// use proxy_quic::{CidError, CidFormat, ConfigId};
/// let err = CidFormat::new(ConfigId::new(0).unwrap(), 10, 10, None, false).unwrap_err();
/// assert_eq!(err, CidError::TooLong { server_id: 10, nonce: 10 });
/// assert_eq!(err.to_string(),
///            "server ID (10 octets) and nonce (10 octets) sum to 20 octets; at most 19 fit a QUIC connection ID");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// A server ID length outside 1-15 octets.
    #[error("a server ID of {0} octets: it must be 1-15 octets")]
    ServerIdLength(usize),
    /// A nonce length outside 4-18 octets.
    #[error("a nonce of {0} octets: it must be 4-18 octets")]
    NonceLength(usize),
    /// Server ID and nonce longer than 19 octets together.
    #[error("server ID ({server_id} octets) and nonce ({nonce} octets) sum to {} octets; at most 19 fit a QUIC connection ID", server_id + nonce)]
    TooLong {
        /// The server ID length.
        server_id: usize,
        /// The nonce length.
        nonce: usize,
    },
    /// A server ID or nonce of another length than the format's.
    #[error("{what} of {got} octets for a format that takes {want}")]
    WrongLength {
        /// `"a server ID"` or `"a nonce"`.
        what: &'static str,
        /// The length given.
        got: usize,
        /// The format's length.
        want: usize,
    },
    /// An unroutable connection ID length outside 2-20 octets.
    #[error(
        "an unroutable connection ID of {0} octets: it must be 2-20 octets (8 or more recommended)"
    )]
    UnroutableLength(usize),
    /// A nonce space that does not name one of its parts.
    #[error("nonce space {index} of {count}: the index must be below the count, and the count at least 1")]
    NonceSpaceIndex {
        /// The index.
        index: u32,
        /// The count.
        count: u32,
    },
    /// A nonce space split into more parts than the nonce can hold with enough
    /// counter bits left.
    #[error("a {nonce_len}-octet nonce split {count} ways leaves {counter_bits} counter bits; at least {min} are needed: use a longer nonce_length or fewer parts")]
    NonceSpaceTooSmall {
        /// The nonce length in octets.
        nonce_len: usize,
        /// The number of parts.
        count: u32,
        /// The counter bits that would be left.
        counter_bits: u32,
        /// The minimum.
        min: u32,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random,
}
