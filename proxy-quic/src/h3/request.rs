//! One HTTP/3 request: its head and body into the stack's [`HttpRequest`], the
//! stack's [`HttpResponse`] back onto the stream, body streamed, then trailers.

use std::{future::poll_fn, net::SocketAddr, pin::Pin, sync::Arc};

use ::h3::error::{Code, StreamError};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, StatusCode, Version};
use proxy_core::{Body, ConnInfo, HttpRequest, HttpResponse};
use tower::ServiceExt;
use tracing::Instrument;

use super::{
    body::{RecvHalf, RequestBody, RequestBodyError},
    connection::Shared,
    H3Stats,
};

/// A request stream whose head has not been read yet.
pub(super) type Resolver = ::h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
/// The sending half of a request stream.
type SendHalf = ::h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// Connection-specific fields: malformed in an HTTP/3 message (RFC 9114 section
/// 4.2), dropped from responses that came from HTTP/1.1 upstreams.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Reads the request on `resolver`'s stream, runs it through the listener's stack
/// and sends the answer. `peer` is the client's address when the request arrived.
pub(super) async fn serve(resolver: Resolver, peer: SocketAddr, shared: Arc<Shared>) {
    let stats = &shared.stats;
    let (head, stream) = match resolver.resolve_request().await {
        Ok(r) => r,
        Err(e) => {
            // h3 has answered already: H3_MESSAGE_ERROR for a malformed head, 431
            // for one over the size limit, a connection error for bad framing.
            if matches!(
                e,
                StreamError::HeaderTooBig { .. } | StreamError::StreamError { .. }
            ) {
                stats.malformed();
            }
            tracing::debug!(error = %e, "HTTP/3 request head not read");
            return;
        }
    };
    let (mut send, mut recv) = stream.split();
    let declared = match check_head(&head) {
        Ok(d) => d,
        Err(reason) => {
            tracing::debug!(reason, "malformed HTTP/3 request");
            stats.malformed();
            reject_malformed(&mut send, &mut recv);
            return;
        }
    };
    let span = tracing::debug_span!(
        "h3_request",
        method = %head.method(),
        authority = head.uri().authority().map_or("", |a| a.as_str()),
        path = head.uri().path(),
    );
    let _active = stats.request();
    async {
        if head.method() == Method::CONNECT {
            // Tunnels over HTTP/3 (RFC 9114 section 4.4) are not served.
            let resp = status(StatusCode::NOT_IMPLEMENTED);
            if let Err(e) = respond(&mut send, resp, stats).await {
                tracing::debug!(error = %e, "response not sent");
            }
            return;
        }
        let mut req: HttpRequest = head.map(|()| RequestBody::into_body(recv, declared));
        *req.version_mut() = Version::HTTP_3;
        req.extensions_mut().insert(ConnInfo::new(Some(peer), true));
        let resp = match shared.stack.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %proxy_core::DisplayChain(&*e), "request stack failed");
                stats.stack_error();
                proxy_core::proxy::reply_for_error(&e)
            }
        };
        if let Err(e) = respond(&mut send, resp, stats).await {
            tracing::debug!(error = %e, "response not sent whole");
        }
    }
    .instrument(span)
    .await;
}

/// The declared body length, or why the head is malformed: a connection-specific
/// field, `te` other than `trailers`, a `content-length` that is not one number, an
/// authority that could not be sent on as `Host` or a second `Host` field.
fn check_head(head: &http::Request<()>) -> Result<Option<u64>, &'static str> {
    // h3 has refused a request with neither `:authority` nor `Host`, or with both
    // and different (RFC 9114 4.3.1), and made the URI's authority of either.
    proxy_core::proxy::check_authority(head.uri(), head.headers()).map_err(|e| e.as_str())?;
    let headers = head.headers();
    if CONNECTION_SPECIFIC.iter().any(|h| headers.contains_key(h)) {
        return Err("connection-specific header field");
    }
    if headers
        .get_all(header::TE)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        return Err("te other than trailers");
    }
    let mut declared = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = std::str::from_utf8(value.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("content-length is not a number")?;
        if declared.is_some_and(|d| d != n) {
            return Err("conflicting content-length values");
        }
        declared = Some(n);
    }
    Ok(declared)
}

/// Ends both directions of a malformed request's stream with H3_MESSAGE_ERROR.
fn reject_malformed(send: &mut SendHalf, recv: &mut RecvHalf) {
    send.stop_stream(Code::H3_MESSAGE_ERROR);
    recv.stop_sending(Code::H3_MESSAGE_ERROR);
}

fn status(status: StatusCode) -> HttpResponse {
    let mut resp = HttpResponse::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// Sends `resp`: the head without connection-specific fields, the body frame by
/// frame as it comes, the trailers, then the end of the stream. A body that fails
/// midway resets the stream (H3_INTERNAL_ERROR) so the client does not take a
/// truncated body for a whole one.
async fn respond(
    send: &mut SendHalf,
    resp: HttpResponse,
    stats: &H3Stats,
) -> Result<(), StreamError> {
    let (mut parts, mut body) = resp.into_parts();
    strip_connection_specific(&mut parts.headers);
    send.send_response(http::Response::from_parts(parts, ()))
        .await?;
    loop {
        let frame = poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await;
        match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if !data.is_empty() {
                        send.send_data(data).await?;
                    }
                }
                Err(frame) => {
                    if let Ok(mut trailers) = frame.into_trailers() {
                        strip_connection_specific(&mut trailers);
                        send.send_trailers(trailers).await?;
                        break;
                    }
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %proxy_core::DisplayChain(&*e), "response body failed; resetting the stream");
                let code = reset_code(&*e);
                if code == Code::H3_MESSAGE_ERROR {
                    stats.malformed();
                }
                stats.response_reset();
                send.stop_stream(code);
                return Ok(());
            }
        }
    }
    send.finish().await
}

/// The code that resets a response whose body failed: H3_MESSAGE_ERROR when the
/// cause is this request's malformed body (its answer streamed it back, or failed
/// reading it), H3_INTERNAL_ERROR otherwise.
fn reset_code(err: &(dyn std::error::Error + 'static)) -> Code {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(RequestBodyError::TooLong { .. } | RequestBodyError::TooShort { .. }) =
            e.downcast_ref::<RequestBodyError>()
        {
            return Code::H3_MESSAGE_ERROR;
        }
        cur = e.source();
    }
    Code::H3_INTERNAL_ERROR
}

fn strip_connection_specific(headers: &mut HeaderMap) {
    for name in &CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// A request for `https://a.example/` with `pairs` as its fields.
    fn head(pairs: &[(&str, &str)]) -> http::Request<()> {
        let mut req = http::Request::new(());
        *req.uri_mut() = "https://a.example/".parse().unwrap();
        *req.headers_mut() = headers(pairs);
        req
    }

    #[test]
    fn heads_are_checked_as_rfc_9114_says() {
        assert_eq!(check_head(&head(&[])), Ok(None));
        assert_eq!(check_head(&head(&[("content-length", "12")])), Ok(Some(12)));
        assert_eq!(
            check_head(&head(&[("content-length", "3"), ("content-length", "3")])),
            Ok(Some(3))
        );
        assert_eq!(check_head(&head(&[("te", "trailers")])), Ok(None));
        for bad in [
            vec![("content-length", "3"), ("content-length", "4")],
            vec![("content-length", "-1")],
            vec![("content-length", "+1")],
            vec![("content-length", "")],
            vec![("content-length", "99999999999999999999999")],
            vec![("connection", "close")],
            vec![("transfer-encoding", "chunked")],
            vec![("keep-alive", "1")],
            vec![("upgrade", "websocket")],
            vec![("te", "gzip")],
        ] {
            assert!(check_head(&head(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_authority_is_one_that_can_go_on_as_host() {
        assert_eq!(check_head(&head(&[("host", "a.example")])), Ok(None));
        let mut path_only = head(&[("host", "b.example")]);
        *path_only.uri_mut() = "/".parse().unwrap();
        assert_eq!(check_head(&path_only), Ok(None));
        assert_eq!(
            check_head(&head(&[("host", "a.example"), ("host", "b.example")])),
            Err("more than one host")
        );
        let mut userinfo = head(&[]);
        *userinfo.uri_mut() = "https://u@a.example/".parse().unwrap();
        assert_eq!(check_head(&userinfo), Err("invalid :authority"));
        let mut none = head(&[]);
        *none.uri_mut() = "/".parse().unwrap();
        assert_eq!(check_head(&none), Err("missing :authority and host"));
    }

    #[test]
    fn responses_lose_connection_specific_fields() {
        let mut h = headers(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("content-type", "text/plain"),
        ]);
        strip_connection_specific(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
