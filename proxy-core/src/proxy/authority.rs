//! The authority of an HTTP/2 or HTTP/3 request: the `:authority` it names or its one
//! `Host` field, checked before anything reads it.
//!
//! Over HTTP/1.1 the connection loop refuses a request without exactly one valid
//! `Host`. HTTP/2 and HTTP/3 carry the authority in `:authority` (which becomes the
//! request URI's authority) and may also carry `Host` fields. What an HTTP/1.1
//! upstream receives as `Host` comes from one of them, so they are held to the same
//! rules here: one of them, `Host`'s grammar, no second `Host` to route one way and
//! read another.

use http::{header, HeaderMap, Uri};

/// Why a request's authority cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorityError {
    /// Neither `:authority` nor `Host`: an `http` or `https` target has a host
    /// (RFC 9110 4.2.1), and an HTTP/1.1 upstream needs it (RFC 9112 3.2).
    Missing,
    /// `:authority` outside `Host`'s grammar, or with a userinfo (RFC 9113 8.3.1).
    InvalidAuthority,
    /// The one `Host` field outside its grammar.
    InvalidHost,
    /// More than one `Host` field (RFC 9110 7.2 allows one).
    MoreThanOneHost,
}

impl AuthorityError {
    /// The reason, for the answer to the client and the log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing :authority and host",
            Self::InvalidAuthority => "invalid :authority",
            Self::InvalidHost => "invalid host",
            Self::MoreThanOneHost => "more than one host",
        }
    }
}

impl std::fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for AuthorityError {}

/// Checks the authority of a request that arrived over HTTP/2 or HTTP/3: its URI's
/// authority (`:authority`) if it has one, else its `Host` field, must be there and
/// valid as a `Host` value; a second `Host` field is refused either way.
///
/// A `Host` that differs from `:authority` is not refused here: `:authority` is the
/// one routed on and sent on (RFC 9113 8.3.1 has a proxy replace `Host` with it).
///
/// # Errors
/// The first rule the request breaks.
///
/// # Example
/// ```
/// use http::{HeaderMap, HeaderValue, Uri};
/// use proxy_core::proxy::{check_authority, AuthorityError};
///
/// let mut headers = HeaderMap::new();
/// let with_authority: Uri = "http://api.example/v1".parse()?;
/// assert_eq!(check_authority(&with_authority, &headers), Ok(()));
///
/// let path_only: Uri = "/v1".parse()?;
/// assert_eq!(check_authority(&path_only, &headers), Err(AuthorityError::Missing));
/// headers.append("host", HeaderValue::from_static("api.example"));
/// assert_eq!(check_authority(&path_only, &headers), Ok(()));
/// headers.append("host", HeaderValue::from_static("admin.example"));
/// assert_eq!(check_authority(&path_only, &headers), Err(AuthorityError::MoreThanOneHost));
/// # Ok::<(), http::Error>(())
/// ```
pub fn check_authority(uri: &Uri, headers: &HeaderMap) -> Result<(), AuthorityError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::MoreThanOneHost);
    }
    match (uri.authority(), host) {
        (Some(a), _) if crate::http1::head::valid_host(a.as_str().as_bytes()) => Ok(()),
        (Some(_), _) => Err(AuthorityError::InvalidAuthority),
        (None, Some(h)) if crate::http1::head::valid_host(h.as_bytes()) => Ok(()),
        (None, Some(_)) => Err(AuthorityError::InvalidHost),
        (None, None) => Err(AuthorityError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn check(uri: &str, hosts: &[&'static str]) -> Result<(), AuthorityError> {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_static(h));
        }
        check_authority(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn one_valid_authority_is_needed_and_one_host_at_most() {
        assert_eq!(check("http://a.example/p", &[]), Ok(()));
        assert_eq!(check("http://a.example:8080/p", &["b.example"]), Ok(()));
        assert_eq!(check("http://[::1]:8080/p", &[]), Ok(()));
        assert_eq!(check("/p", &["a.example"]), Ok(()));
        assert_eq!(check("/p", &["a.example:80"]), Ok(()));

        assert_eq!(check("/p", &[]), Err(AuthorityError::Missing));
        assert_eq!(
            check("http://u@a.example/p", &[]),
            Err(AuthorityError::InvalidAuthority)
        );
        for bad in ["u@a.example", "a b", "", "a.example:80x", ":80"] {
            assert_eq!(
                check("/p", &[bad]),
                Err(AuthorityError::InvalidHost),
                "{bad:?}"
            );
        }
        assert_eq!(
            check("/p", &["a.example", "b.example"]),
            Err(AuthorityError::MoreThanOneHost)
        );
        assert_eq!(
            check("http://a.example/p", &["a.example", "a.example"]),
            Err(AuthorityError::MoreThanOneHost)
        );
    }
}
