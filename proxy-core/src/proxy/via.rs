//! `Via` (RFC 9110, section 7.6.3): a gateway names itself in each request it sends
//! on, after the protocol version the request arrived in (`1.1 edge-1`, `2 edge-1`),
//! so that an upstream sees the chain of intermediaries, and in each response it sends
//! back, after the protocol the upstream answered in. A request whose `Via` already
//! names the proxy has come round a forwarding loop and is refused (508). Off unless a
//! listener names the proxy (`via: edge-1`), as in nginx, HAProxy and Envoy, since it
//! tells the upstream which proxies stand in front of it.

use http::{header, HeaderMap, HeaderValue, Version};

/// The `Via` entry a proxy adds to the messages it forwards, for each protocol version
/// a message can arrive in: made once, cloned per message.
///
/// # Example
/// ```
/// use http::{header::VIA, HeaderMap, HeaderValue};
/// use proxy_core::proxy::Via;
///
/// let via = Via::new("edge-1").unwrap();
/// assert_eq!(via.pseudonym(), "edge-1");
/// assert!(Via::new("two words").is_err());
///
/// let mut headers = HeaderMap::new();
/// headers.insert(VIA, HeaderValue::from_static("1.0 fred, 1.1 edge-1 (our gateway)"));
/// assert!(via.seen_in(&headers));
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

    /// Whether a `Via` field of `headers` has an entry received by this proxy's
    /// pseudonym (in any letter case): the message has passed this proxy before.
    /// Comments (`1.1 edge-1 (gateway, east)`) and `protocol-name/` prefixes are read
    /// as RFC 9110 writes them.
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        headers.get_all(header::VIA).iter().any(|value| {
            entries(value.as_bytes())
                .filter_map(received_by)
                .any(|by| by.eq_ignore_ascii_case(self.pseudonym.as_bytes()))
        })
    }

    /// The entry for a message that arrived in `version`.
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

/// The entries of a `Via` field value: split at the commas outside comments. A value
/// whose comments do not all close is split at every comma instead, so that a comment
/// a client left open cannot hide the entries appended after it, this proxy's own.
fn entries(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut whole = Comments::default();
    value.iter().for_each(|&b| {
        whole.outside(b);
    });
    let all_closed = whole.depth == 0;
    let mut comments = Comments::default();
    value.split(move |&b| {
        let outside = comments.outside(b);
        b == b',' && (outside || !all_closed)
    })
}

/// Where a scan of a field value stands with its comments: parenthesised, nested, a
/// backslash inside one escaping the next character (RFC 9110 5.6.5).
#[derive(Debug, Default)]
struct Comments {
    depth: usize,
    escaped: bool,
}

impl Comments {
    /// Takes the value's next byte: whether it stands outside every comment.
    fn outside(&mut self, b: u8) -> bool {
        if self.escaped {
            self.escaped = false;
            return false;
        }
        match b {
            b'\\' if self.depth > 0 => self.escaped = true,
            b'(' => self.depth += 1,
            b')' if self.depth > 0 => {
                self.depth -= 1;
                return false;
            }
            _ => {}
        }
        self.depth == 0
    }
}

/// The received-by part of one `Via` entry (`1.1 edge-1 (comment)` -> `edge-1`), or
/// `None` for an empty list element or one without it.
fn received_by(entry: &[u8]) -> Option<&[u8]> {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let mut words = entry
        .split(is_ws)
        .filter(|w| !w.is_empty())
        .take_while(|w| !w.starts_with(b"("));
    let _received_protocol = words.next()?;
    words.next()
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
    fn seen_in_finds_the_pseudonym_among_entries_and_comments() {
        let via = Via::new("edge-1").unwrap();
        let seen = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.append(header::VIA, HeaderValue::from_static("1.0 fred"));
            headers.append(header::VIA, HeaderValue::from_static(value));
            via.seen_in(&headers)
        };
        assert!(seen("1.1 edge-1"));
        assert!(seen("HTTP/2 EDGE-1"));
        assert!(seen("1.0 a, ,\t1.1\tedge-1\t(comment)"));
        assert!(seen("1.1 a (x, 1.1 edge-2), 2 edge-1"));
        // In a comment, after a received-by of another name, or as a protocol: not us.
        assert!(!seen("1.1 p.example (1.1 edge-1)"));
        assert!(!seen("1.1 p.example (a \\) , 1.1 edge-1)"));
        assert!(!seen("1.1 edge-10"));
        assert!(!seen("edge-1"));
        assert!(!seen("edge-1 p.example"));
        assert!(!seen(""));
        assert!(!seen("(edge-1) edge-1"));
        // A comment left open does not hide what was appended after it.
        assert!(seen("1.1 a (open, 1.1 edge-1"));
        assert!(seen("1.1 a (x \\), 1.1 edge-1"));
        assert!(!via.seen_in(&HeaderMap::new()));
    }

    #[test]
    fn a_pseudonym_is_a_short_token() {
        assert!(Via::new("sidecar.payments_v2").is_ok());
        for bad in ["", "a b", "a,b", "a\r\nx: y", "é", &"a".repeat(65)] {
            assert_eq!(Via::new(bad).unwrap_err(), InvalidVia(bad.to_owned()));
        }
    }
}
