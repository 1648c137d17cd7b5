//! Request header names a lenient server could read as another field.
//!
//! A name with `_` where a `-` belongs (`transfer_encoding`, `Content_Length`) is a
//! different field to this proxy, but some servers and CGI-style gateways fold `_`
//! and `-` together: forwarded, it could change how such an upstream frames the
//! message (request smuggling) or which host it serves. Names that fold onto a framing
//! or connection field are never forwarded: refused, or dropped under the `drop`
//! policy. Other names with `_` follow the listener's policy
//! ([`UnderscoreHeaders`]). Names that are not tokens never get this far (the
//! HTTP/1.1 parser and HTTP/2 refuse them).

use http::HeaderMap;

use crate::config::UnderscoreHeaders;

/// Fields whose meaning is framing, routing or connection management.
const SENSITIVE: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Why a request's header names were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    /// A name folds onto a framing or connection field.
    #[error("header name {0:?} could be read as a framing or connection field")]
    LooksLikeFraming(&'static str),
    /// A name has an underscore and the policy refuses those.
    #[error("header name with an underscore refused by policy")]
    Underscore,
}

/// Whether a raw field name has an `_` and, with `-` for it, is a framing or
/// connection field's name (any case): such a name in an upstream's answer is
/// dropped, never forwarded, since no policy makes it useful to a client.
pub(crate) fn folds_onto_framing(raw: &[u8]) -> bool {
    raw.contains(&b'_')
        && SENSITIVE.iter().any(|s| {
            s.len() == raw.len()
                && raw.iter().zip(s.bytes()).all(|(&r, s)| {
                    let r = if r == b'_' {
                        b'-'
                    } else {
                        r.to_ascii_lowercase()
                    };
                    r == s
                })
        })
}

/// Whether a trailer field named `name` (lowercase, as [`http::HeaderName`] keeps it)
/// must not be sent: a framing, routing or connection field, or a name that folds onto
/// one. Such fields mean nothing after the content (RFC 9110, section 6.5.1), and a
/// lenient peer that merged them into the header section could reframe the message.
pub(crate) fn barred_from_trailers(name: &str) -> bool {
    SENSITIVE.contains(&name) || folds_onto_framing(name.as_bytes())
}

/// Applies `policy` to the names with `_` in `headers`: a no-op (one scan of the
/// names) for the usual request that has none.
pub(crate) fn screen(headers: &mut HeaderMap, policy: UnderscoreHeaders) -> Result<(), NameError> {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return Ok(());
    }
    let mut drop = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if !n.contains('_') {
            continue;
        }
        let folded = n.replace('_', "-");
        let framing = SENSITIVE.iter().find(|s| **s == folded);
        match (framing, policy) {
            (Some(_), UnderscoreHeaders::Drop) => drop.push(name.clone()),
            (Some(f), _) => return Err(NameError::LooksLikeFraming(f)),
            (None, UnderscoreHeaders::Forward) => {}
            (None, UnderscoreHeaders::Drop) => drop.push(name.clone()),
            (None, UnderscoreHeaders::Reject) => return Err(NameError::Underscore),
        }
    }
    for name in drop {
        headers.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                "1".parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn answer_names_that_fold_onto_framing_are_found() {
        for name in [
            "Content_Length",
            "transfer_encoding",
            "KEEP_ALIVE",
            "Proxy_Connection",
        ] {
            assert!(folds_onto_framing(name.as_bytes()), "{name}");
        }
        for name in [
            "Content-Length",
            "x_custom",
            "content_lengths",
            "content__length",
        ] {
            assert!(!folds_onto_framing(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn framing_lookalikes_are_never_forwarded() {
        for name in [
            "transfer_encoding",
            "content_length",
            "proxy_connection",
            "keep_alive",
        ] {
            let mut h = map(&["x-ok", name]);
            assert!(
                screen(&mut h, UnderscoreHeaders::Forward).is_err(),
                "{name}"
            );
            assert!(screen(&mut h, UnderscoreHeaders::Reject).is_err(), "{name}");
            assert!(screen(&mut h, UnderscoreHeaders::Drop).is_ok());
            assert!(!h.contains_key(name), "{name} dropped");
            assert!(h.contains_key("x-ok"));
        }
    }

    #[test]
    fn other_underscores_follow_the_policy() {
        let mut h = map(&["x_api_key", "x-ok"]);
        assert!(screen(&mut h, UnderscoreHeaders::Forward).is_ok());
        assert!(h.contains_key("x_api_key"));
        assert_eq!(
            screen(&mut h, UnderscoreHeaders::Reject),
            Err(NameError::Underscore)
        );
        assert!(screen(&mut h, UnderscoreHeaders::Drop).is_ok());
        assert!(!h.contains_key("x_api_key"));
        let mut clean = map(&["x-a", "content-length"]);
        assert!(screen(&mut clean, UnderscoreHeaders::Reject).is_ok());
        assert_eq!(clean.len(), 2);
    }
}
