//! Bolt frames to and from `http::Request` / `http::Response`.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Version};
use proxy_core::{Body, HttpRequest, HttpResponse};

use super::{
    content::{self, SOFA_REQUEST},
    frame::{
        BoltFrame, BoltVersion, CMD_REQUEST, CMD_RESPONSE, CODEC_HESSIAN2, TYPE_REQUEST,
        TYPE_RESPONSE,
    },
    header_map, status, BoltMeta,
};
use crate::{
    http_map::{
        add_header, for_each_joined_field, forwarded, original_key, rpc_info, rpc_uri,
        split_rpc_path,
    },
    protocol::{DecodeError, EncodeError},
};

/// The class name of SOFARPC's response object.
pub const SOFA_RESPONSE: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

const KEY_TARGET_SERVICE: &str = "sofa_head_target_service";
const KEY_SERVICE: &str = "service";
const KEY_METHOD: &str = "sofa_head_method_name";

/// The Bolt protocol fields of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoltRequestInfo {
    /// v1 or v2.
    pub version: BoltVersion,
    /// [`TYPE_REQUEST`] or [`super::TYPE_ONEWAY`].
    pub rpc_type: u8,
    /// The command version.
    pub ver2: u8,
    /// The downstream request id (upstream connections use their own).
    pub request_id: u32,
    /// The content's serializer.
    pub codec: u8,
    /// The caller's timeout in milliseconds (0: none).
    pub timeout: i32,
    /// The content's class name.
    pub class_name: Bytes,
    /// What of the header map is not in the request's headers as is.
    pub extra_headers: HeaderExtras,
}

/// What of a Bolt header map does not fit an `http::HeaderMap` as is, kept so that
/// the map is re-encoded faithfully.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderExtras {
    /// Entries whose key is not a valid header name, or whose value is null or not a
    /// valid header value.
    pub entries: Vec<(Bytes, Option<Bytes>)>,
    /// The original spelling of keys that were lowercased into header names
    /// (`rpc_trace_context.sofaTraceId`), restored on the way out.
    pub cased_keys: Vec<Bytes>,
    /// A header map that could not be parsed at all, passed on whole.
    pub raw: Option<Bytes>,
}

/// The Bolt protocol fields of a response, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoltResponseInfo {
    /// The exact Bolt response status.
    pub status: u16,
    /// The content's serializer.
    pub codec: u8,
    /// The content's class name.
    pub class_name: Bytes,
    /// What of the header map is not in the response's headers as is.
    pub extra_headers: HeaderExtras,
}

fn headers_from_map(map: Bytes) -> Result<(HeaderMap, HeaderExtras), DecodeError> {
    let mut headers = HeaderMap::new();
    let mut extra = HeaderExtras::default();
    header_map::parse(map, |k, v| {
        if let Some(e) = add_header(&mut headers, &mut extra.cased_keys, k, v) {
            extra.entries.push(e);
        }
    })?;
    Ok((headers, extra))
}

fn header_str<'a>(headers: &'a HeaderMap, key: &str) -> Option<&'a str> {
    headers
        .get(key)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

pub(super) fn request_to_http(f: BoltFrame) -> Result<HttpRequest, DecodeError> {
    // Only RPC requests are proxied: another command code (a peer's extension, or
    // garbage) is answered with the protocol's error, never forwarded as a call.
    if f.cmd_code != CMD_REQUEST {
        return Err(DecodeError::Malformed("unknown bolt command code"));
    }
    let (headers, extra_headers) = headers_from_map(f.header)?;
    let mut service = header_str(&headers, KEY_TARGET_SERVICE)
        .or_else(|| header_str(&headers, KEY_SERVICE))
        .map(str::to_owned);
    let mut method = header_str(&headers, KEY_METHOD).map(str::to_owned);
    if (service.is_none() || method.is_none())
        && f.codec == CODEC_HESSIAN2
        && &f.class_name[..] == SOFA_REQUEST.as_bytes()
    {
        let (s, m) = content::service_and_method(&f.content)?;
        service = service.or(s);
        method = method.or(m);
    }
    let service = service.unwrap_or_default();
    let method = method.unwrap_or_default();
    let mut req = Request::new(Body::from(f.content));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = rpc_uri(&service, &method);
    *req.headers_mut() = headers;
    let ext = req.extensions_mut();
    ext.insert(rpc_info("bolt", &service, &method));
    ext.insert(BoltRequestInfo {
        version: f.version,
        rpc_type: f.rpc_type,
        ver2: f.ver2,
        request_id: f.request_id,
        codec: f.codec,
        timeout: f.timeout,
        class_name: f.class_name,
        extra_headers,
    });
    Ok(req)
}

/// The header map of a message: the one it came with (`extra` is there) re-encoded
/// faithfully, a repeated key as repeated entries; a message from another protocol's
/// fields with a repeated field's values joined into one entry, since the receiver's
/// map keeps one value per key ([`for_each_joined_field`]). `spare` more bytes are
/// reserved, for entries the caller adds.
fn header_map_of(headers: &HeaderMap, extra: Option<&HeaderExtras>, spare: usize) -> BytesMut {
    if let Some(raw) = extra.and_then(|e| e.raw.as_ref()) {
        let mut dst = BytesMut::with_capacity(raw.len() + spare);
        dst.extend_from_slice(raw);
        return dst;
    }
    let Some(extra) = extra else {
        let mut joined = Vec::new();
        let mut len = 0;
        for_each_joined_field(headers, &mut joined, |name, value| {
            len += header_map::entry_len(name.as_ref(), Some(value));
        });
        let mut dst = BytesMut::with_capacity(len + spare);
        for_each_joined_field(headers, &mut joined, |name, value| {
            header_map::put(&mut dst, name.as_ref(), Some(value));
        });
        return dst;
    };
    let fields = || headers.iter().filter(|(name, _)| forwarded(name));
    let len: usize = fields()
        .map(|(name, value)| header_map::entry_len(name.as_ref(), Some(value.as_bytes())))
        .chain(
            extra
                .entries
                .iter()
                .map(|(k, v)| header_map::entry_len(k, v.as_deref())),
        )
        .sum();
    let mut dst = BytesMut::with_capacity(len + spare);
    for (name, value) in fields() {
        header_map::put(
            &mut dst,
            original_key(&extra.cased_keys, name),
            Some(value.as_bytes()),
        );
    }
    for (k, v) in &extra.entries {
        header_map::put(&mut dst, k, v.as_deref());
    }
    dst
}

pub(super) fn request_from_http(
    parts: http::request::Parts,
    body: Bytes,
) -> Result<BoltFrame, EncodeError> {
    let info = parts.extensions.get::<BoltRequestInfo>();
    let extra = info.map(|i| &i.extra_headers);
    // A request from another protocol: name the target the SOFARPC way.
    let target = info.is_none().then(|| split_rpc_path(parts.uri.path()));
    let target_len = target.as_ref().map_or(0, |(service, method)| {
        let entry =
            |key: &str, value: &str| header_map::entry_len(key.as_bytes(), Some(value.as_bytes()));
        entry(KEY_SERVICE, service) + entry(KEY_TARGET_SERVICE, service) + entry(KEY_METHOD, method)
    });
    let mut header = header_map_of(&parts.headers, extra, target_len);
    if let Some((service, method)) = target {
        for (key, value) in [
            (KEY_SERVICE, &service),
            (KEY_TARGET_SERVICE, &service),
            (KEY_METHOD, &method),
        ] {
            if !value.is_empty() && !parts.headers.contains_key(key) {
                header_map::put(&mut header, key.as_bytes(), Some(value.as_bytes()));
            }
        }
    }
    Ok(BoltFrame {
        version: info.map_or(BoltVersion::V1, |i| i.version),
        rpc_type: info.map_or(TYPE_REQUEST, |i| i.rpc_type),
        cmd_code: CMD_REQUEST,
        ver2: info.map_or(1, |i| i.ver2),
        request_id: 0,
        codec: info.map_or(CODEC_HESSIAN2, |i| i.codec),
        timeout: info.map_or(0, |i| i.timeout),
        status: 0,
        class_name: info.map_or_else(
            || Bytes::from_static(SOFA_REQUEST.as_bytes()),
            |i| i.class_name.clone(),
        ),
        header: header.freeze(),
        content: body,
    })
}

pub(super) fn response_to_http(f: BoltFrame) -> HttpResponse {
    let (headers, extra_headers) = match headers_from_map(f.header.clone()) {
        Ok(h) => h,
        // An unreadable header map is passed on whole rather than failing the call.
        Err(_) => (
            HeaderMap::new(),
            HeaderExtras {
                raw: Some(f.header),
                ..HeaderExtras::default()
            },
        ),
    };
    let mut resp = Response::new(Body::from(f.content));
    *resp.status_mut() = status::to_http(f.status);
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = headers;
    resp.extensions_mut().insert(BoltResponseInfo {
        status: f.status,
        codec: f.codec,
        class_name: f.class_name,
        extra_headers,
    });
    resp
}

pub(super) fn response_from_http(
    meta: &BoltMeta,
    parts: http::response::Parts,
    body: Bytes,
) -> BoltFrame {
    let info = parts.extensions.get::<BoltResponseInfo>();
    let extra = info.map(|i| &i.extra_headers);
    let header = header_map_of(&parts.headers, extra, 0);
    let status = info.map_or_else(|| status::from_http(parts.status), |i| i.status);
    let class_name = match info {
        Some(i) => i.class_name.clone(),
        None if status == status::SUCCESS => Bytes::from_static(SOFA_RESPONSE.as_bytes()),
        None => Bytes::new(),
    };
    BoltFrame {
        version: meta.version,
        rpc_type: TYPE_RESPONSE,
        cmd_code: CMD_RESPONSE,
        ver2: meta.ver2,
        request_id: meta.request_id,
        codec: info.map_or(meta.codec, |i| i.codec),
        timeout: 0,
        status,
        class_name,
        header: header.freeze(),
        content: body,
    }
}
