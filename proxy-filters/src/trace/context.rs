//! W3C Trace Context level 1: the `traceparent` and `tracestate` headers, parsed and
//! written without allocation beyond the output string. Pure functions, no runtime.

use std::fmt;

use http::{HeaderMap, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// Most list members a `tracestate` may carry (W3C Trace Context, 3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A 16-byte trace id, never all zero.
///
/// ```
/// use proxy_filters::trace::TraceId;
/// let id = TraceId::from_bytes([0xab; 16]).unwrap();
/// assert_eq!(id.to_string(), "abababababababababababababababab");
/// assert!(TraceId::from_bytes([0; 16]).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id (a `parent-id` in `traceparent`), never all zero.
///
/// ```
/// use proxy_filters::trace::SpanId;
/// let id = SpanId::from_bytes([0, 0, 0, 0, 0, 0, 0, 7]).unwrap();
/// assert_eq!(id.to_string(), "0000000000000007");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

macro_rules! id_impl {
    ($ty:ident, $n:literal) => {
        impl $ty {
            /// The id of these bytes; `None` for all zero (invalid in W3C Trace Context).
            pub fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                (bytes != [0; $n]).then_some(Self(bytes))
            }

            /// A new random id (never all zero).
            pub fn random() -> Self {
                loop {
                    let mut bytes = [0u8; $n];
                    fastrand::fill(&mut bytes);
                    if let Some(id) = Self::from_bytes(bytes) {
                        return id;
                    }
                }
            }

            /// The raw bytes.
            pub fn to_bytes(self) -> [u8; $n] {
                self.0
            }

            /// The id in lowercase hex, as a header value.
            pub fn to_header_value(self) -> HeaderValue {
                let mut hex = [0u8; $n * 2];
                encode_lower_hex(&self.0, &mut hex);
                HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static(""))
            }

            /// Parses exactly the lowercase hex of a valid id.
            fn parse_hex(s: &[u8]) -> Option<Self> {
                let mut out = [0u8; $n];
                decode_lower_hex(s, &mut out)?;
                Self::from_bytes(out)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut hex = [0u8; $n * 2];
                encode_lower_hex(&self.0, &mut hex);
                f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($ty))
            }
        }
    };
}

id_impl!(TraceId, 16);
id_impl!(SpanId, 8);

/// `bytes` as lowercase hex into `out` (twice as long).
fn encode_lower_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// `s` as lowercase hex into `out`, which it must fill exactly.
fn decode_lower_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// A parsed `traceparent`: who the caller is in which trace, and whether it records.
///
/// ```
/// use proxy_filters::trace::TraceParent;
/// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(tp.sampled());
/// assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// // Uppercase hex, an all-zero id, version ff: invalid, so a new trace starts.
/// assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span (the `parent-id` field).
    pub parent_id: SpanId,
    /// The trace flags; only the sampled bit (`0x01`) is defined in version 00.
    pub flags: u8,
}

impl TraceParent {
    /// A `traceparent` for `span` in `trace`, with the sampled bit as given.
    pub fn new(trace_id: TraceId, parent_id: SpanId, sampled: bool) -> Self {
        Self {
            trace_id,
            parent_id,
            flags: if sampled { SAMPLED } else { 0 },
        }
    }

    /// Whether the caller may have recorded the trace (the sampled flag).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Parses a header value per W3C Trace Context level 1: version `00` is exactly
    /// `00-<32 hex>-<16 hex>-<2 hex>`; a higher version (not `ff`) is read by the
    /// forward-compatibility rules (at least 55 characters, the same three fields,
    /// then the end or a `-`). Hex must be lowercase, neither id all zero. `None`
    /// means invalid: the caller starts a new trace.
    pub fn parse(value: &str) -> Option<Self> {
        let b = value.as_bytes();
        if b.len() < 55 {
            return None;
        }
        let mut version = [0u8; 1];
        decode_lower_hex(&b[0..2], &mut version)?;
        if version[0] == 0xff || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        match (version[0], b.len()) {
            (0, 55) => {}
            (0, _) => return None,
            // A future version: more fields may follow after a dash.
            (_, 55) => {}
            (_, _) if b[55] == b'-' => {}
            _ => return None,
        }
        let trace_id = TraceId::parse_hex(&b[3..35])?;
        let parent_id = SpanId::parse_hex(&b[36..52])?;
        let mut flags = [0u8; 1];
        decode_lower_hex(&b[53..55], &mut flags)?;
        Some(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The request's `traceparent`: `None` when absent, repeated, not text or
    /// invalid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.to_str().ok()?)
    }

    /// The header value, always version `00`; flags other than sampled are cleared
    /// (they are not defined in version 00).
    pub fn to_header_value(&self) -> HeaderValue {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        encode_lower_hex(&self.trace_id.0, &mut out[3..35]);
        encode_lower_hex(&self.parent_id.0, &mut out[36..52]);
        encode_lower_hex(&[self.flags & SAMPLED], &mut out[53..55]);
        // Hex and dashes only: always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags & SAMPLED
        )
    }
}

/// Whether the request's `tracestate` header lines, taken together as one list, are
/// valid: at most [`MAX_TRACESTATE_MEMBERS`] members, each `key=value` with the
/// grammar of W3C Trace Context 3.3.1, no key twice. Empty members (`a=1,,b=2`) are
/// allowed. An invalid list is dropped, never repaired.
///
/// ```
/// use proxy_filters::trace::tracestate_is_valid;
/// assert!(tracestate_is_valid(["rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"]));
/// assert!(tracestate_is_valid(["tenant@vendor=x"]));
/// assert!(!tracestate_is_valid(["Upper=1"]));
/// assert!(!tracestate_is_valid(["a=1,a=2"]));
/// ```
pub fn tracestate_is_valid<'a>(lines: impl IntoIterator<Item = &'a str>) -> bool {
    let mut keys: Vec<&str> = Vec::new();
    for line in lines {
        for member in line.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else {
                return false;
            };
            if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
                return false;
            }
            if keys.len() == MAX_TRACESTATE_MEMBERS {
                return false;
            }
            keys.push(key);
        }
    }
    true
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| key_char(c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| key_char(c))
        }
    }
}

/// Up to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    let printable = |c: u8| matches!(c, 0x20..=0x7e) && c != b',' && c != b'=';
    (1..=256).contains(&b.len()) && b.iter().all(|&c| printable(c)) && b[b.len() - 1] != b' '
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn version_00_is_exact() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), VALID);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn future_versions_parse_forward_compatibly() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09";
        let tp = TraceParent::parse(v).expect("same length");
        assert!(tp.sampled());
        // Unknown flags are not propagated; the version written is ours.
        assert_eq!(
            tp.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(TraceParent::parse(&format!("{v}-what-comes-next")).is_some());
        assert!(TraceParent::parse(&format!("{v}x")).is_none(), "no dash");
        assert!(TraceParent::parse(&v[..54]).is_none(), "too short");
    }

    #[test]
    fn repeated_header_is_invalid() {
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(TraceParent::from_headers(&h).is_some());
        h.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(TraceParent::from_headers(&h).is_none());
    }

    #[test]
    fn tracestate_members_are_bounded_and_checked() {
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v{i}")).collect();
        assert!(tracestate_is_valid([members.join(",").as_str()]));
        let (a, b) = members.split_at(16);
        assert!(tracestate_is_valid([
            a.join(",").as_str(),
            b.join(",").as_str()
        ]));
        let too_many = format!("{},k32=v", members.join(","));
        assert!(!tracestate_is_valid([too_many.as_str()]));
        assert!(tracestate_is_valid(["a=1 , ,b=2\t"]));
        assert!(tracestate_is_valid([""]));
        for bad in [
            "a", "=1", "a=", "a=b=c", "1a=x", "a=x\ty", "t@Sys=1", "t@=1", "a=\u{7f}",
        ] {
            assert!(!tracestate_is_valid([bad]), "{bad:?}");
        }
        assert!(tracestate_is_valid(["1tenant@sys=v"]));
        assert!(
            !tracestate_is_valid(["a=1", "a=2"]),
            "duplicate across lines"
        );
    }

    #[test]
    fn random_ids_are_valid() {
        for _ in 0..100 {
            let tp = TraceParent::new(TraceId::random(), SpanId::random(), true);
            assert_eq!(TraceParent::parse(&tp.to_string()), Some(tp));
        }
    }
}
