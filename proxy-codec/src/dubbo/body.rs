//! The hessian2 bodies of Dubbo requests and responses: the leading invocation fields,
//! the arguments (skipped) and the attachments map.

use crate::hessian2::{HessianError, MapEntry, Reader};

/// Response body flag: an exception follows.
pub const RESPONSE_WITH_EXCEPTION: i32 = 0;
/// Response body flag: a value follows.
pub const RESPONSE_VALUE: i32 = 1;
/// Response body flag: a null value.
pub const RESPONSE_NULL_VALUE: i32 = 2;
/// Response body flag: an exception, then attachments.
pub const RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS: i32 = 3;
/// Response body flag: a value, then attachments.
pub const RESPONSE_VALUE_WITH_ATTACHMENTS: i32 = 4;
/// Response body flag: a null value, then attachments.
pub const RESPONSE_NULL_VALUE_WITH_ATTACHMENTS: i32 = 5;

/// The routing fields of a Dubbo request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The Dubbo protocol version the client speaks (`2.0.2`).
    pub dubbo_version: String,
    /// The service path (usually the interface name).
    pub service: String,
    /// The service version.
    pub version: String,
    /// The method name.
    pub method: String,
    /// The parameter types as JVM descriptors (`Ljava/lang/String;I`).
    pub parameter_types: String,
    /// The attachments whose keys and values are strings (or null values).
    pub attachments: Vec<(String, Option<String>)>,
    /// The other attachments (a non-string key or value), as their raw bytes.
    pub other_attachments: Vec<Vec<u8>>,
    /// Where the attachments map starts in the body (the body's length if it has none).
    pub attachments_at: usize,
    /// The `timeout` attachment in milliseconds, as Java consumers send it (a string;
    /// a number, as dubbo2.js sends its own setting, is not taken: its unit differs).
    pub timeout_ms: Option<u64>,
}

/// Counts the parameters in a JVM method descriptor's parameter list.
pub(crate) fn count_parameters(desc: &str) -> Result<usize, HessianError> {
    let b = desc.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i) {
            Some(b'Z' | b'B' | b'C' | b'S' | b'I' | b'J' | b'F' | b'D' | b'V') => i += 1,
            Some(b'L') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b';')
                    .ok_or(HessianError::BadLength)?;
                i += end + 1;
            }
            _ => return Err(HessianError::BadLength),
        }
        n += 1;
    }
    Ok(n)
}

/// Reads a request body: the leading strings, skips the arguments, then the
/// attachments map (when present).
pub(crate) fn parse_request(body: &[u8]) -> Result<Invocation, HessianError> {
    let mut r = Reader::new(body);
    let mut inv = Invocation {
        dubbo_version: r.read_string()?.unwrap_or_default(),
        service: r.read_string()?.unwrap_or_default(),
        version: r.read_string()?.unwrap_or_default(),
        method: r.read_string()?.unwrap_or_default(),
        ..Invocation::default()
    };
    inv.parameter_types = r.read_string()?.unwrap_or_default();
    for _ in 0..count_parameters(&inv.parameter_types)? {
        r.skip_value()?;
    }
    inv.attachments_at = r.position();
    if !r.is_empty() {
        r.read_map(&mut |e| match e {
            MapEntry::Strings { key, value, .. } => {
                if key == "timeout" {
                    inv.timeout_ms = value.as_deref().and_then(|v| v.trim().parse().ok());
                }
                inv.attachments.push((key, value));
            }
            MapEntry::Other { raw } => inv.other_attachments.push(raw.to_vec()),
        })?;
    }
    Ok(inv)
}

/// Reads the attachments of a response body that has them.
pub(crate) fn parse_response_attachments(
    body: &[u8],
) -> Result<Vec<(String, Option<String>)>, HessianError> {
    let mut r = Reader::new(body);
    let flag = r.read_int()?;
    let mut out = Vec::new();
    match flag {
        RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS | RESPONSE_VALUE_WITH_ATTACHMENTS => {
            r.skip_value()?;
        }
        RESPONSE_NULL_VALUE_WITH_ATTACHMENTS => {}
        _ => return Ok(out),
    }
    r.read_string_map(&mut |k, v| out.push((k, v)))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian2::Writer;

    #[test]
    fn descriptors() {
        assert_eq!(count_parameters("").unwrap(), 0);
        assert_eq!(
            count_parameters("Ljava/lang/String;I[[J[Lcom/x/Y;Z").unwrap(),
            5
        );
        assert!(count_parameters("Ljava/lang/String").is_err());
        assert!(count_parameters("Q").is_err());
    }

    #[test]
    fn request_with_arguments_and_attachments() {
        let mut w = Writer::new();
        w.string("2.0.2")
            .string("org.example.DemoService")
            .string("1.0.0")
            .string("sayHello");
        w.string("Ljava/lang/String;Ljava/util/Map;I");
        w.string("world");
        w.map_begin()
            .string("nested")
            .list_begin()
            .int(1)
            .list_end()
            .map_end();
        w.int(7);
        w.string_map([("path", "org.example.DemoService"), ("group", "g1")]);
        let inv = parse_request(w.as_bytes()).unwrap();
        assert_eq!(inv.service, "org.example.DemoService");
        assert_eq!(inv.method, "sayHello");
        assert_eq!(inv.version, "1.0.0");
        assert_eq!(inv.attachments.len(), 2);
        assert_eq!(inv.attachments[1], ("group".into(), Some("g1".into())));
    }

    #[test]
    fn response_attachments() {
        let mut w = Writer::new();
        w.int(RESPONSE_VALUE_WITH_ATTACHMENTS)
            .string("hi")
            .string_map([("k", "v")]);
        assert_eq!(
            parse_response_attachments(w.as_bytes()).unwrap(),
            vec![("k".into(), Some("v".into()))]
        );
    }
}
