//! The `Host` field's grammar (RFC 9110 7.2: `uri-host [ ":" port ]`, the host of
//! RFC 3986 3.2.2). RFC 9112 3.2 has a server answer 400 to a `Host` whose value is
//! invalid, so a value an upstream or a router could read another way (a space, a
//! userinfo `@`, a path) never goes further.

/// Whether `value` is `uri-host [ ":" port ]` with a host. An empty value is not: it
/// is for targets without an authority (RFC 9110 7.2), and an `http` or `https` URI
/// always has one, with a host that is not empty (RFC 9110 4.2.1, 4.2.2).
pub(crate) fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() || value[0] == b':' {
        return false;
    }
    let rest = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) if ip_literal(&value[1..end]) => &value[end + 1..],
            _ => return false,
        },
        _ => match reg_name_len(value) {
            Some(end) => &value[end..],
            None => return false,
        },
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// The length of the `reg-name` (which also covers an IPv4 address) at the start of
/// `value`: unreserved, sub-delims and complete percent-encodings, up to the first
/// other byte. `None` for a `%` not followed by two hex digits.
fn reg_name_len(value: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if REG_NAME_BYTE[usize::from(b)] {
            i += 1;
        } else if b == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            break;
        }
    }
    Some(i)
}

/// The bytes a `reg-name` has as they are: unreserved and sub-delims. A table, as
/// the field is checked on every request.
static REG_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = unreserved(b as u8) || sub_delim(b as u8);
        b += 1;
    }
    table
};

/// Between the brackets: an IPv6 address (hex digits, `:` and a dotted IPv4 tail)
/// or `v` HEXDIG+ `.` (unreserved / sub-delims / `:`)+.
fn ip_literal(inner: &[u8]) -> bool {
    match inner.first() {
        Some(b'v' | b'V') => {
            let Some(dot) = inner.iter().position(|&b| b == b'.') else {
                return false;
            };
            let (version, tail) = (&inner[1..dot], &inner[dot + 1..]);
            !version.is_empty()
                && version.iter().all(u8::is_ascii_hexdigit)
                && !tail.is_empty()
                && tail
                    .iter()
                    .all(|&b| unreserved(b) || sub_delim(b) || b == b':')
        }
        Some(_) => std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some(),
        None => false,
    }
}

const fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts_of_the_grammar_are_valid() {
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::7]",
            "[::ffff:192.0.2.1]:80",
            "[v1.fe80::a+en1]",
            "a%20b",
            "host:",
            "xn--bcher-kva.example",
            "under_score.example",
        ] {
            assert!(valid_host(host.as_bytes()), "{host:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for host in [
            "",
            ":80",
            "a b",
            "user@example.com",
            "example.com/path",
            "example.com?x",
            "example.com#f",
            "example.com:80a",
            "example.com:80:81",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "[]",
            "[v.x]",
            "[v1.]",
            "a%2",
            "a%zz",
            "a\tb",
            "\"quoted\"",
            "a\\b",
            "例え.jp",
        ] {
            assert!(!valid_host(host.as_bytes()), "{host:?}");
        }
    }
}
