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
    http_map::{add_header, rpc_info, rpc_uri},
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
}

/// The Dubbo protocol fields of a response, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DubboResponseInfo {
    /// The exact Dubbo status.
    pub status: u8,
    /// The serialization id.
    pub serialization: u8,
}

type Split = (HeaderMap, Vec<(Bytes, Option<Bytes>)>);

fn headers_from(attachments: Vec<(String, Option<String>)>) -> Split {
    let mut headers = HeaderMap::new();
    let mut extra = Vec::new();
    for (k, v) in attachments {
        if let Some(e) = add_header(&mut headers, Bytes::from(k), v.map(Bytes::from)) {
            extra.push(e);
        }
    }
    (headers, extra)
}

pub(super) fn request_to_http(f: DubboFrame) -> Result<HttpRequest, DecodeError> {
    if f.serialization() != HESSIAN2 {
        return Err(DecodeError::Malformed(
            "only hessian2 dubbo bodies are routed",
        ));
    }
    let inv = body::parse_request(&f.body)?;
    let (headers, extra_attachments) = headers_from(inv.attachments);
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
    });
    Ok(req)
}

/// The body is passed on unchanged: a request from another protocol must carry a
/// complete hessian2 invocation body.
pub(super) fn request_from_http(parts: &http::request::Parts, body: Bytes) -> DubboFrame {
    let flags = parts
        .extensions
        .get::<DubboRequestInfo>()
        .map_or(FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, |i| i.flags);
    DubboFrame {
        flags,
        status: 0,
        request_id: 0,
        body,
    }
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
