//! `Via` (RFC 9110, section 7.6.3): a gateway names itself in each request it sends
//! on, after the protocol version the request arrived in (`1.1 edge-1`, `2 edge-1`),
//! so that an upstream sees the chain of intermediaries and a forwarding loop can be
//! told. Off unless a listener names the proxy (`via: edge-1`), as in nginx, HAProxy
//! and Envoy, since it tells the upstream which proxies stand in front of it.

use http::{HeaderValue, Version};

/// The `Via` entry a proxy adds to the requests it forwards, for each protocol version
/// a request can arrive in: made once, cloned per request.
///
/// # Example
/// ```
/// use proxy_core::proxy::Via;
///
/// let via = Via::new("edge-1").unwrap();
/// assert_eq!(via.pseudonym(), "edge-1");
/// assert!(Via::new("two words").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Via {
    pseudonym: Box<str>,
    /// `1.0`, `1.1`, `2` and `3`, each followed by the pseudonym.
    entries: [HeaderValue; 4],
}

/// A `Via` pseudonym that is not an HTTP token (RFC 9110 5.6.2), or is empty or longer
/// than 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a pseudonym: 1 to 64 token characters (letters, digits, !#$%&'*+-.^_`|~)")]
pub struct InvalidVia(pub String);

impl Via {
    /// The proxy named `pseudonym` (a token: `edge-1`, `sidecar.payments`).
    pub fn new(pseudonym: &str) -> Result<Self, InvalidVia> {
        let token = !pseudonym.is_empty()
            && pseudonym.len() <= 64
            && pseudonym.bytes().all(crate::http1::decode::is_tchar);
        if !token {
            return Err(InvalidVia(pseudonym.to_owned()));
        }
        let entry = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {pseudonym}"))
                .map_err(|_| InvalidVia(pseudonym.to_owned()))
        };
        Ok(Self {
            pseudonym: pseudonym.into(),
            entries: [entry("1.0")?, entry("1.1")?, entry("2")?, entry("3")?],
        })
    }

    /// The name the proxy gives itself.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// The entry for a request that arrived in `version`.
    pub(crate) fn entry(&self, version: Version) -> HeaderValue {
        let i = match version {
            Version::HTTP_09 | Version::HTTP_10 => 0,
            Version::HTTP_2 => 2,
            Version::HTTP_3 => 3,
            _ => 1,
        };
        self.entries[i].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_names_the_version_the_request_came_in() {
        let via = Via::new("edge-1").unwrap();
        assert_eq!(via.entry(Version::HTTP_10), "1.0 edge-1");
        assert_eq!(via.entry(Version::HTTP_11), "1.1 edge-1");
        assert_eq!(via.entry(Version::HTTP_2), "2 edge-1");
        assert_eq!(via.entry(Version::HTTP_3), "3 edge-1");
    }

    #[test]
    fn a_pseudonym_is_a_short_token() {
        assert!(Via::new("sidecar.payments_v2").is_ok());
        for bad in ["", "a b", "a,b", "a\r\nx: y", "é", &"a".repeat(65)] {
            assert_eq!(Via::new(bad).unwrap_err(), InvalidVia(bad.to_owned()));
        }
    }
}
