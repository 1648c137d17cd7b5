//! Dubbo frames to and from `http::Request` / `http::Response`.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Version};
use proxy_core::{Body, HttpRequest, HttpResponse};

use super::{
    body,
    frame::{DubboFrame, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2, SERIALIZATION_MASK},
    status, Dubbo, DubboMeta,
};
use crate::{
    hessian2::Writer,
    http_map::{add_header, fingerprint, forwarded, original_key, rpc_info, rpc_uri},
    protocol::DecodeError,
};

/// The Dubbo protocol fields of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DubboRequestInfo {
    /// Request, two-way and event flags, and the serialization id.
    pub flags: u8,
    /// The downstream request id (upstream connections use their own).
    pub request_id: u64,
    /// The Dubbo protocol version the client speaks.
    pub dubbo_version: String,
    /// The service version.
    pub service_version: String,
    /// The parameter types (JVM descriptors).
    pub parameter_types: String,
    /// String attachments that are not valid HTTP headers (or have null values).
    pub extra_attachments: Vec<(Bytes, Option<Bytes>)>,
    /// Attachments with a non-string key or value, as their raw hessian2 bytes.
    pub other_attachments: Vec<Bytes>,
    /// The original spelling of attachment keys lowercased into header names.
    pub cased_keys: Vec<Bytes>,
    /// Where the attachments map starts in the body.
    pub attachments_at: usize,
    /// A digest of the headers as decoded: when the headers reaching the upstream
    /// side differ (a filter changed them), the attachments map is rewritten from
    /// them; otherwise the body goes out byte for byte.
    pub headers_digest: u64,
    /// The caller's `timeout` attachment in milliseconds, if any.
    pub timeout_ms: Option<u64>,
}

/// The Dubbo protocol fields of a response, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DubboResponseInfo {
    /// The exact Dubbo status.
    pub status: u8,
    /// The serialization id.
    pub serialization: u8,
}

/// Headers from attachments, the entries that are not headers, and the original
/// spelling of keys that were lowercased.
type Split = (HeaderMap, Vec<(Bytes, Option<Bytes>)>, Vec<Bytes>);

fn headers_from(attachments: Vec<(String, Option<String>)>) -> Split {
    let mut headers = HeaderMap::new();
    let mut extra = Vec::new();
    let mut cased = Vec::new();
    for (k, v) in attachments {
        if let Some(e) = add_header(&mut headers, &mut cased, Bytes::from(k), v.map(Bytes::from)) {
            extra.push(e);
        }
    }
    (headers, extra, cased)
}

pub(super) fn request_to_http(f: DubboFrame) -> Result<HttpRequest, DecodeError> {
    if f.serialization() != HESSIAN2 {
        return Err(DecodeError::Malformed(
            "only hessian2 dubbo bodies are routed",
        ));
    }
    let inv = body::parse_request(&f.body)?;
    let (headers, extra_attachments, cased_keys) = headers_from(inv.attachments);
    let headers_digest = fingerprint(&headers);
    let mut req = Request::new(Body::from(f.body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = rpc_uri(&inv.service, &inv.method);
    *req.headers_mut() = headers;
    let ext = req.extensions_mut();
    ext.insert(rpc_info("dubbo", &inv.service, &inv.method));
    ext.insert(DubboRequestInfo {
        flags: f.flags,
        request_id: f.request_id,
        dubbo_version: inv.dubbo_version,
        service_version: inv.version,
        parameter_types: inv.parameter_types,
        extra_attachments,
        other_attachments: inv.other_attachments.into_iter().map(Bytes::from).collect(),
        cased_keys,
        attachments_at: inv.attachments_at,
        headers_digest,
        timeout_ms: inv.timeout_ms,
    });
    Ok(req)
}

/// The body is passed on unchanged unless a filter changed the headers, in which
/// case its attachments map is rewritten from them. A request from another protocol
/// must carry a complete hessian2 invocation body.
pub(super) fn request_from_http(parts: &http::request::Parts, body: Bytes) -> DubboFrame {
    let info = parts.extensions.get::<DubboRequestInfo>();
    let flags = info.map_or(FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, |i| i.flags);
    let body = match info {
        Some(i)
            if i.headers_digest != fingerprint(&parts.headers)
                && i.attachments_at <= body.len() =>
        {
            rewrite_attachments(i, &parts.headers, &body)
        }
        _ => body,
    };
    DubboFrame {
        flags,
        status: 0,
        request_id: 0,
        body,
    }
}

/// The body with its attachments map replaced by the headers (original key spelling),
/// the attachments that are not headers, and the non-string ones as they were.
fn rewrite_attachments(info: &DubboRequestInfo, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let mut w = Writer::new();
    w.raw(&body[..info.attachments_at]);
    w.map_begin();
    for (name, value) in headers {
        if forwarded(name) {
            w.string(&String::from_utf8_lossy(original_key(
                &info.cased_keys,
                name,
            )));
            w.string(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
    for (k, v) in &info.extra_attachments {
        w.string(&String::from_utf8_lossy(k));
        match v {
            Some(v) => w.string(&String::from_utf8_lossy(v)),
            None => w.null(),
        };
    }
    for raw in &info.other_attachments {
        w.raw(raw);
    }
    w.map_end();
    Bytes::from(w.into_bytes())
}

pub(super) fn response_to_http(f: DubboFrame) -> HttpResponse {
    let headers = if f.status == status::OK && f.serialization() == HESSIAN2 {
        body::parse_response_attachments(&f.body)
            .map(|a| headers_from(a).0)
            .unwrap_or_default()
    } else {
        HeaderMap::new()
    };
    let info = DubboResponseInfo {
        status: f.status,
        serialization: f.serialization(),
    };
    let mut resp = Response::new(Body::from(f.body));
    *resp.status_mut() = status::to_http(f.status);
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = headers;
    resp.extensions_mut().insert(info);
    resp
}

pub(super) fn response_from_http(
    meta: &DubboMeta,
    parts: &http::response::Parts,
    body: Bytes,
) -> DubboFrame {
    match parts.extensions.get::<DubboResponseInfo>() {
        Some(info) => DubboFrame {
            flags: info.serialization & SERIALIZATION_MASK,
            status: info.status,
            request_id: meta.request_id,
            body,
        },
        None => {
            let status = status::from_http(parts.status);
            // A non-Dubbo error answer: its text as the hessian2 error string.
            let body = if status == status::OK {
                body
            } else {
                Dubbo::string_body(&String::from_utf8_lossy(&body))
            };
            DubboFrame {
                flags: meta.serialization,
                status,
                request_id: meta.request_id,
                body,
            }
        }
    }
}
