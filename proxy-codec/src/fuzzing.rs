//! Entry points for the fuzz targets in `proxy-codec/fuzz` (not a stable API): each
//! feeds arbitrary bytes through a decoder the way a connection would, and must
//! never panic.

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use crate::{
    hessian2::Reader,
    mux::next_frame,
    protocol::{FrameKind, Protocol},
    sniff::{
        detect, sniff_bolt, sniff_dubbo, sniff_h2, sniff_http1, sniff_tls, Detected, Detection,
        Sniff,
    },
    Bolt, DecodeError, Dubbo, Failure,
};

/// Cuts frames from `data` as a connection's read loop does (1 MiB cap), decodes
/// them, maps requests and responses onto HTTP and back, and builds every reply.
fn frames<P: Protocol>(p: &P, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let _ = p.malformed_reply(data, &DecodeError::Malformed("fuzz"));
    loop {
        let frame = match next_frame(p, &mut buf, 1 << 20) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        let Ok(f) = p.decode(frame) else { return };
        let mut out = BytesMut::new();
        let _ = p.encode(&f, &mut out);
        let meta = p.request_meta(&f);
        let failure = Failure {
            reason: "upstream_timeout",
            status: StatusCode::GATEWAY_TIMEOUT,
            message: "t",
        };
        let _ = p.encode(&p.error_reply(&meta, &failure), &mut out);
        match p.kind(&f) {
            FrameKind::Request | FrameKind::OneWay => {
                if let Ok(req) = p.request_to_http(f) {
                    let (mut parts, body) = req.into_parts();
                    let _ = p.timeout(&parts);
                    let body = futures_util::FutureExt::now_or_never(
                        http_body_util::BodyExt::collect(body),
                    )
                    .and_then(Result::ok)
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                    for b in [false, true] {
                        if b {
                            // A filter's change: Dubbo rewrites its attachments then.
                            parts
                                .headers
                                .insert("x-fuzz", http::HeaderValue::from_static("1"));
                        }
                        if let Ok(up) = p.request_from_http(parts.clone(), body.clone()) {
                            let _ = p.encode(&up, &mut out);
                        }
                    }
                }
            }
            FrameKind::Response => {
                let (parts, _) = p.response_to_http(f).into_parts();
                let back = p.response_from_http(&meta, parts, Bytes::new());
                let _ = p.encode(&back, &mut out);
            }
            FrameKind::Heartbeat => {
                let _ = p.encode(&p.heartbeat_reply(&f), &mut out);
            }
            FrameKind::HeartbeatReply => {}
        }
    }
}

/// Bolt frames.
pub fn bolt_frames(data: &[u8]) {
    frames(&Bolt, data);
}

/// Dubbo frames.
pub fn dubbo_frames(data: &[u8]) {
    frames(&Dubbo, data);
}

/// The hessian2 reader in both dialects: skipping values, string maps, objects,
/// Dubbo invocation bodies.
pub fn hessian2_skip(data: &[u8]) {
    for draft in [false, true] {
        let mk = || {
            if draft {
                Reader::draft(data)
            } else {
                Reader::new(data)
            }
        };
        let mut r = mk();
        while !r.is_empty() && r.skip_value().is_ok() {}
        let _ = mk().read_string_map(&mut |_, _| {});
        let _ = mk().read_object(&mut |_, r| r.string_or_skip().map(|_| true));
    }
    let _ = Dubbo::parse_invocation(data);
}

/// The sniffer: never panics, and what it detects the matching sniff function claims.
pub fn sniff(data: &[u8]) {
    let claim = |d: Detected| match d {
        Detected::Http1 => sniff_http1(data),
        Detected::Http2 => sniff_h2(data),
        Detected::Tls => sniff_tls(data),
        Detected::Bolt => sniff_bolt(data),
        Detected::Dubbo => sniff_dubbo(data),
    };
    if let Detection::Found(d) = detect(data) {
        assert_eq!(claim(d), Sniff::Match, "detect said {d:?}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_take_anything() {
        for data in [
            &b""[..],
            b"\x01\x01\x00\x01",
            b"\xda\xbb\xe2",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"OWWWWz",
        ] {
            super::bolt_frames(data);
            super::dubbo_frames(data);
            super::hessian2_skip(data);
            super::sniff(data);
        }
    }
}
