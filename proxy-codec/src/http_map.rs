//! Helpers shared by the protocols' mappings onto `http::Request`: the
//! `/{service}/{method}` path, header maps, and the neutral RPC facts.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Headers that describe the proxy's own HTTP handling, never copied into an RPC
/// protocol's header map on the way upstream.
const NOT_FORWARDED: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-proxy-error",
    "content-type",
];

/// Whether a header should be carried in an RPC header map.
pub(crate) fn forwarded(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(&name.as_str())
}

/// The path `/{service}/{method}` (each segment percent-encoded where needed), or `/`
/// when the service is unknown.
pub(crate) fn rpc_uri(service: &str, method: &str) -> Uri {
    let mut path = String::with_capacity(service.len() + method.len() + 2);
    if !service.is_empty() {
        path.push('/');
        push_segment(&mut path, service);
        path.push('/');
        push_segment(&mut path, method);
    } else {
        path.push('/');
    }
    Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"))
}

fn push_segment(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The service and method back from a `/{service}/{method}` path (percent-decoded).
pub(crate) fn split_rpc_path(path: &str) -> (String, String) {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    (decode_segment(service), decode_segment(method))
}

fn decode_segment(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds an RPC header-map entry to `headers` if its key (lowercased) and value are a
/// valid header; returns the entry back otherwise.
///
/// A key spelled with capitals is remembered in `cased` so that its spelling is
/// restored on the way out. Keys that differ only in case share one header name and
/// so one spelling: the first entry's, whether or not it has capitals.
pub(crate) fn add_header(
    headers: &mut HeaderMap,
    cased: &mut Vec<Bytes>,
    key: Bytes,
    value: Option<Bytes>,
) -> Option<(Bytes, Option<Bytes>)> {
    let Some(v) = value.as_ref() else {
        return Some((key, value));
    };
    match (
        HeaderName::from_bytes(&key),
        HeaderValue::from_maybe_shared(v.clone()),
    ) {
        (Ok(name), Ok(value)) => {
            if !headers.contains_key(&name) && key.iter().any(u8::is_ascii_uppercase) {
                cased.push(key);
            }
            headers.append(name, value);
            None
        }
        _ => Some((key, value)),
    }
}

/// A digest of the headers an RPC header map would carry, to tell whether filters
/// changed them.
pub(crate) fn fingerprint(headers: &HeaderMap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for (name, value) in headers {
        if forwarded(name) {
            name.as_str().hash(&mut h);
            value.as_bytes().hash(&mut h);
        }
    }
    h.finish()
}

/// Calls `entry` with each field of an HTTP message from another protocol that goes
/// into an RPC header map, one entry per name: a map keeps one value per key (a Java
/// receiver's keeps the last), so the values of a repeated field are joined as RFC
/// 9110 5.3 allows, with `, `, and those of `Cookie` with `; ` (RFC 9113 8.2.3).
/// `Set-Cookie`, which cannot be joined (RFC 9110 5.3), stays one entry per value.
/// `joined` is scratch space for the joined values.
pub(crate) fn for_each_joined_field(
    headers: &HeaderMap,
    joined: &mut Vec<u8>,
    mut entry: impl FnMut(&HeaderName, &[u8]),
) {
    let mut fields = headers.iter().peekable();
    while let Some((name, value)) = fields.next() {
        if !forwarded(name) {
            continue;
        }
        let repeated = fields.peek().is_some_and(|(next, _)| *next == name);
        if !repeated || name == http::header::SET_COOKIE {
            entry(name, value.as_bytes());
            continue;
        }
        let separator: &[u8] = if name == http::header::COOKIE {
            b"; "
        } else {
            b", "
        };
        joined.clear();
        joined.extend_from_slice(value.as_bytes());
        while let Some((_, value)) = fields.next_if(|(next, _)| *next == name) {
            joined.extend_from_slice(separator);
            joined.extend_from_slice(value.as_bytes());
        }
        entry(name, joined);
    }
}

/// The original spelling of `name` among `cased` keys, or the name itself.
pub(crate) fn original_key<'a>(cased: &'a [Bytes], name: &'a HeaderName) -> &'a [u8] {
    let name = name.as_str().as_bytes();
    cased
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or(name, |k| &k[..])
}

/// The neutral facts about an RPC call, put in request extensions for balancers,
/// filters and logs.
pub(crate) fn rpc_info(protocol: &'static str, service: &str, method: &str) -> crate::RpcInfo {
    crate::RpcInfo::new(protocol, service, method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for (s, m) in [
            ("com.example.Hello:1.0", "sayHello"),
            ("a/b c", "m%"),
            ("Outer$Inner", "é"),
        ] {
            let uri = rpc_uri(s, m);
            assert_eq!(split_rpc_path(uri.path()), (s.to_owned(), m.to_owned()));
        }
        assert_eq!(rpc_uri("", "x").path(), "/");
        assert_eq!(
            rpc_uri("com.example.Hello:1.0", "sayHello").path(),
            "/com.example.Hello:1.0/sayHello"
        );
    }

    #[test]
    fn a_repeated_field_is_one_entry_of_joined_values() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-tag", "a"),
            ("cookie", "s=1"),
            ("x-one", "only"),
            ("x-tag", "b, c"),
            ("set-cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
            ("host", "not.carried"),
            ("cookie", "t=2"),
            ("set-cookie", "b=2"),
            ("x-tag", "d"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let mut entries = Vec::new();
        for_each_joined_field(&headers, &mut Vec::new(), |name, value| {
            entries.push(format!("{name}: {}", String::from_utf8_lossy(value)));
        });
        entries.sort();
        assert_eq!(
            entries,
            [
                "cookie: s=1; t=2",
                "set-cookie: a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                "set-cookie: b=2",
                "x-one: only",
                "x-tag: a, b, c, d",
            ]
        );
    }
}
