//! Virtual host selection by the Host header / `:authority`.

use super::hash::FxHashMap;
use crate::ConfigError;

/// Longest host, in bytes, lowercased on the stack; longer ones (never valid DNS names)
/// are lowercased on the heap.
const STACK_HOST: usize = 256;

/// Maps a request's host to the index of its virtual host.
#[derive(Debug, Default)]
pub(super) struct HostIndex {
    exact: FxHashMap<Box<str>, u32>,
    /// `*.example.com` is stored as `.example.com`.
    suffix: FxHashMap<Box<str>, u32>,
    /// The distinct key lengths of `suffix`, longest first.
    suffix_lens: Box<[usize]>,
    /// `api.*` is stored as `api.`.
    prefix: FxHashMap<Box<str>, u32>,
    /// The distinct key lengths of `prefix`, longest first.
    prefix_lens: Box<[usize]>,
    any: Option<u32>,
}

/// Collects and checks the domains of all virtual hosts of one table.
#[derive(Debug, Default)]
pub(super) struct HostIndexBuilder {
    index: HostIndex,
    /// Lowercased domain -> the field path that declared it first.
    seen: FxHashMap<String, String>,
}

enum Domain<'a> {
    Any,
    Exact(&'a str),
    Suffix(&'a str),
    Prefix(&'a str),
}

impl HostIndexBuilder {
    /// Adds `domain` (at config path `field`) for the virtual host `vhost`.
    pub(super) fn add(&mut self, field: &str, domain: &str, vhost: u32) -> Result<(), ConfigError> {
        let lower = domain.to_ascii_lowercase();
        let parsed = parse_domain(&lower).map_err(|reason| ConfigError::new(field, reason))?;
        if let Some(first) = self.seen.get(&lower) {
            return Err(ConfigError::new(
                field,
                format_args!("duplicate domain {domain:?}, already declared at {first}"),
            ));
        }
        let map = match parsed {
            Domain::Any => {
                self.index.any = Some(vhost);
                None
            }
            Domain::Exact(d) => Some((&mut self.index.exact, d)),
            Domain::Suffix(d) => Some((&mut self.index.suffix, d)),
            Domain::Prefix(d) => Some((&mut self.index.prefix, d)),
        };
        if let Some((map, key)) = map {
            map.insert(key.into(), vhost);
        }
        self.seen.insert(lower, field.to_owned());
        Ok(())
    }

    /// Freezes the index.
    pub(super) fn build(self) -> HostIndex {
        let mut index = self.index;
        index.suffix_lens = lengths(&index.suffix);
        index.prefix_lens = lengths(&index.prefix);
        index
    }
}

fn lengths(map: &FxHashMap<Box<str>, u32>) -> Box<[usize]> {
    let mut lens: Vec<usize> = map.keys().map(|k| k.len()).collect();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens.dedup();
    lens.into()
}

/// Checks a lowercased domain and classifies it.
fn parse_domain(d: &str) -> Result<Domain<'_>, String> {
    if d.is_empty() {
        return Err("a domain must not be empty".into());
    }
    if d == "*" {
        return Ok(Domain::Any);
    }
    if d.bytes()
        .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'/' | b'?' | b'#' | b'@'))
    {
        return Err(format!("{d:?} is not a valid host name"));
    }
    if strip_port(d) != d {
        return Err(format!(
            "{d:?} carries a port; the port of the Host header is ignored, leave it out"
        ));
    }
    let stars = d.bytes().filter(|&b| b == b'*').count();
    let wildcard_error =
        || format!("{d:?}: a wildcard is only allowed once, as the first or the last character");
    match (stars, d.strip_prefix('*'), d.strip_suffix('*')) {
        (0, _, _) => Ok(Domain::Exact(d)),
        (1, Some(suffix), _) => Ok(Domain::Suffix(suffix)),
        (1, _, Some(prefix)) => Ok(Domain::Prefix(prefix)),
        _ => Err(wildcard_error()),
    }
}

/// Removes a trailing `:port` (digits only); keeps IPv6 literals (`[::1]:80` -> `[::1]`).
pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) => {
            let (name, port) = host.split_at(colon);
            let digits = port.bytes().skip(1).all(|b| b.is_ascii_digit());
            if digits && !name.contains(':') {
                name
            } else {
                host
            }
        }
        None => host,
    }
}

impl HostIndex {
    /// Whether every host selects the same virtual host (the only domain is `*`, or
    /// there is none): the request's Host need not be read.
    pub(super) fn host_agnostic(&self) -> bool {
        self.exact.is_empty() && self.suffix_lens.is_empty() && self.prefix_lens.is_empty()
    }

    /// The virtual host for a request's Host / `:authority`; a missing one only
    /// matches `*`.
    pub(super) fn select(&self, host: Option<&str>) -> Option<u32> {
        let Some(host) = host.filter(|_| !self.host_agnostic()) else {
            return self.any;
        };
        let host = strip_port(host);
        if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup(host);
        }
        let mut buf = [0u8; STACK_HOST];
        if let Some(lower) = buf.get_mut(..host.len()) {
            lower.copy_from_slice(host.as_bytes());
            lower.make_ascii_lowercase();
            // ASCII lowercasing keeps UTF-8 valid, so this never takes the `Err` arm.
            return match std::str::from_utf8(lower) {
                Ok(lower) => self.lookup(lower),
                Err(_) => self.any,
            };
        }
        self.lookup(&host.to_ascii_lowercase())
    }

    /// Looks up a lowercased host without port.
    fn lookup(&self, host: &str) -> Option<u32> {
        if let Some(&v) = self.exact.get(host) {
            return Some(v);
        }
        // A wildcard matches at least one character, hence `len < host.len()`.
        for &len in self.suffix_lens.iter() {
            if len >= host.len() {
                continue;
            }
            let found = host
                .get(host.len() - len..)
                .and_then(|tail| self.suffix.get(tail));
            if let Some(&v) = found {
                return Some(v);
            }
        }
        for &len in self.prefix_lens.iter() {
            if len >= host.len() {
                continue;
            }
            if let Some(&v) = host.get(..len).and_then(|head| self.prefix.get(head)) {
                return Some(v);
            }
        }
        self.any
    }
}
