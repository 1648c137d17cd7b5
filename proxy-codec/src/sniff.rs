//! Telling protocols apart from the first bytes of a connection.
//!
//! [`detect`] is a pure function over the bytes read so far: it names HTTP/1.x, the
//! HTTP/2 connection preface, a TLS ClientHello, Bolt and Dubbo, or says it needs more
//! bytes. A listener buffers under its header-read timeout and header-bytes cap while
//! the answer is [`Detection::NeedMore`].
//!
//! ```
//! use proxy_codec::sniff::{detect, Detected, Detection};
//!
//! assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detection::Found(Detected::Http1));
//! assert_eq!(detect(&[0xda, 0xbb, 0xc2]), Detection::Found(Detected::Dubbo));
//! assert_eq!(detect(b"PRI * HTTP/2"), Detection::NeedMore);
//! ```

/// Whether a connection's first bytes belong to one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// They do.
    Match,
    /// They do not.
    NoMatch,
    /// Not enough bytes to tell.
    NeedMore,
}

/// A protocol [`detect`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 connection preface (prior knowledge).
    Http2,
    /// A TLS record carrying a ClientHello.
    Tls,
    /// SOFARPC Bolt, v1 or v2.
    Bolt,
    /// Dubbo.
    Dubbo,
}

/// The result of [`detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// The bytes start this protocol.
    Found(Detected),
    /// More bytes are needed to decide.
    NeedMore,
    /// No known protocol starts like this.
    Unknown,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest HTTP method token accepted before the space.
const MAX_METHOD: usize = 20;

type Sniffer = fn(&[u8]) -> Sniff;

/// Tells which protocol `prefix` starts.
pub fn detect(prefix: &[u8]) -> Detection {
    let sniffers: [(Detected, Sniffer); 5] = [
        (Detected::Http2, sniff_h2),
        (Detected::Tls, sniff_tls),
        (Detected::Bolt, sniff_bolt),
        (Detected::Dubbo, sniff_dubbo),
        (Detected::Http1, sniff_http1),
    ];
    let mut undecided = false;
    for (proto, sniff) in sniffers {
        match sniff(prefix) {
            // HTTP/1 is only claimed once the HTTP/2 preface is ruled out.
            Sniff::Match if !(undecided && proto == Detected::Http1) => {
                return Detection::Found(proto)
            }
            Sniff::Match | Sniff::NeedMore => undecided = true,
            Sniff::NoMatch => {}
        }
    }
    if undecided {
        Detection::NeedMore
    } else {
        Detection::Unknown
    }
}

/// The HTTP/2 connection preface.
pub fn sniff_h2(prefix: &[u8]) -> Sniff {
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] != H2_PREFACE[..n] {
        Sniff::NoMatch
    } else if n == H2_PREFACE.len() {
        Sniff::Match
    } else {
        Sniff::NeedMore
    }
}

/// A TLS handshake record (versions SSL 3.0 to TLS 1.3 on the record layer) whose
/// first message is a ClientHello.
pub fn sniff_tls(prefix: &[u8]) -> Sniff {
    let want: [fn(u8) -> bool; 6] = [
        |b| b == 0x16,
        |b| b == 0x03,
        |b| b <= 0x04,
        |_| true,
        |_| true,
        |b| b == 0x01,
    ];
    matches_pattern(prefix, &want)
}

/// Bolt v1 (`0x01`, type, command code) or v2 (`0x02`, version, type, command code).
pub fn sniff_bolt(prefix: &[u8]) -> Sniff {
    let v1: [fn(u8) -> bool; 4] = [|b| b == 0x01, |b| b <= 0x02, |b| b == 0x00, |b| b <= 0x02];
    let v2: [fn(u8) -> bool; 5] = [
        |b| b == 0x02,
        |b| (0x01..=0x02).contains(&b),
        |b| b <= 0x02,
        |b| b == 0x00,
        |b| b <= 0x02,
    ];
    match prefix.first() {
        Some(0x01) => matches_pattern(prefix, &v1),
        Some(0x02) => matches_pattern(prefix, &v2),
        Some(_) => Sniff::NoMatch,
        None => Sniff::NeedMore,
    }
}

/// The Dubbo magic `0xdabb`.
pub fn sniff_dubbo(prefix: &[u8]) -> Sniff {
    let want: [fn(u8) -> bool; 2] = [|b| b == 0xda, |b| b == 0xbb];
    matches_pattern(prefix, &want)
}

/// An HTTP/1.x request line: a method token (upper-case letters, digits, `-`, `_`)
/// followed by a space.
pub fn sniff_http1(prefix: &[u8]) -> Sniff {
    for (i, &b) in prefix.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b' ' if i > 0 => return Sniff::Match,
            b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if i < MAX_METHOD => {}
            _ => return Sniff::NoMatch,
        }
    }
    Sniff::NeedMore
}

fn matches_pattern(prefix: &[u8], want: &[fn(u8) -> bool]) -> Sniff {
    for (b, ok) in prefix.iter().zip(want) {
        if !ok(*b) {
            return Sniff::NoMatch;
        }
    }
    if prefix.len() >= want.len() {
        Sniff::Match
    } else {
        Sniff::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol() {
        let cases: [(&[u8], Detection); 12] = [
            (b"GET / HTTP/1.1\r\n", Detection::Found(Detected::Http1)),
            (b"M-SEARCH * HTTP/1.1", Detection::Found(Detected::Http1)),
            (H2_PREFACE, Detection::Found(Detected::Http2)),
            (b"PRI * HTTP/2.0\r\n", Detection::NeedMore),
            (b"PRI ", Detection::NeedMore),
            (
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0, 0],
                Detection::Found(Detected::Tls),
            ),
            (&[0x16, 0x03, 0x01], Detection::NeedMore),
            (
                &[0x01, 0x01, 0x00, 0x01, 0x01],
                Detection::Found(Detected::Bolt),
            ),
            (
                &[0x02, 0x01, 0x01, 0x00, 0x01],
                Detection::Found(Detected::Bolt),
            ),
            (&[0xda, 0xbb], Detection::Found(Detected::Dubbo)),
            (&[0xda], Detection::NeedMore),
            (b"\x00\x00garbage", Detection::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect(bytes), want, "{bytes:?}");
        }
        assert_eq!(detect(b""), Detection::NeedMore);
        assert_eq!(detect(b"get / HTTP/1.1"), Detection::Unknown);
        assert_eq!(detect(&[0x01, 0x07]), Detection::Unknown);
    }
}
