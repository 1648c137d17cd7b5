//! Matchers specific to the filters: CIDR ranges and request paths normalized as a
//! server resolves them. String and header conditions are core's one matcher
//! ([`proxy_core::matcher`]: `StringMatch`, `HeaderMatch`, one regex rule), re-exported
//! here for the filters' public config types. Pure and synchronous; all validation
//! happens when the config deserializes, so a bad regex, header name or CIDR is
//! refused at load.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

pub use proxy_core::matcher::{Header, HeaderMatch, Pattern, StringMatch};

/// An IP range `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
/// IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) match IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a valid CIDR");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u8>().map_err(|_| bad())?
            }
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The path as a server would resolve it, for matching: percent-encoded unreserved
/// characters (`%61` is `a`) decoded, runs of `/` merged, `.` and `..` segments
/// removed (RFC 3986 5.2.4; `..` never climbs above the root). `%2F` and other
/// reserved escapes stay as they are. So `/public/..//%61dmin` is `/admin` and cannot
/// slip past a rule on `/admin`. Borrows when nothing changes.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    let clean = path.starts_with('/')
        && !path.contains('%')
        && !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/../")
        && !path.ends_with("/.")
        && !path.ends_with("/..");
    if clean {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "."
        || decoded == "..";
    let mut result = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || (trailing && !out.is_empty()) {
        result.push('/');
    }
    std::borrow::Cow::Owned(result)
}

fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Paths are ASCII on the wire; anything else is kept byte for byte.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// The unspecified IPv6 address, for peers without an address (Unix sockets).
pub(crate) const NO_IP: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(one.prefix(), 128);
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_normalize() {
        for (raw, want) in [
            ("/a/b", "/a/b"),
            ("/public/..//%61dmin", "/admin"),
            ("//admin", "/admin"),
            ("/a/./b/../c/", "/a/c/"),
            ("/../../x", "/x"),
            ("/a/..", "/"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%7euser", "/~user"),
            ("/%zz", "/%zz"),
            ("/%4", "/%4"),
            ("", "/"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }
}
