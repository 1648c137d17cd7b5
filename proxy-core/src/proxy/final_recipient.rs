//! Requests the proxy answers itself, as their final recipient, rather than sending
//! upstream (RFC 9110):
//! - `TRACE` and `OPTIONS` with `Max-Forwards: 0` (section 7.6.2); any other value
//!   goes upstream one less. Other methods, and a value that is not a number, pass as
//!   they are.
//! - `OPTIONS *` that no route takes (section 9.3.7): a question about the proxy
//!   itself, answered 200.

use http::{header::MAX_FORWARDS, HeaderValue, Method, StatusCode};

use crate::{Body, HttpRequest, HttpResponse};

/// The proxy's own answer when `req` must go no further, else `None` with its
/// `Max-Forwards` counted down. A request of another method costs one comparison.
pub(super) fn answer_or_count_down(req: &mut HttpRequest) -> Option<HttpResponse> {
    let method = req.method();
    if *method != Method::OPTIONS && *method != Method::TRACE {
        return None;
    }
    let left = req.headers().get(MAX_FORWARDS).and_then(hops_left)?;
    match left.checked_sub(1) {
        Some(next) => {
            req.headers_mut()
                .insert(MAX_FORWARDS, HeaderValue::from(next));
            None
        }
        None => Some(final_answer(req.method())),
    }
}

/// The answer to `req` when it is `OPTIONS *` (asterisk-form: about the server
/// itself), for a request no route took.
pub(super) fn server_wide_options(req: &HttpRequest) -> Option<HttpResponse> {
    // Asterisk-form over HTTP/1.1, `:path` `*` over HTTP/2 and HTTP/3.
    (*req.method() == Method::OPTIONS && req.uri().path() == "*")
        .then(|| final_answer(req.method()))
}

/// A `Max-Forwards` value: 1*DIGIT; a number too long for 64 bits is as good as
/// unlimited.
fn hops_left(value: &HeaderValue) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .unwrap_or(u64::MAX),
    )
}

/// The proxy as the final recipient: `OPTIONS` is answered 200 with no content;
/// `TRACE` is not reflected (it would echo the client's credentials), so it is
/// answered 501.
fn final_answer(method: &Method) -> HttpResponse {
    let mut resp = HttpResponse::new(Body::empty());
    if *method == Method::TRACE {
        *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
    }
    // Over HTTP/2 an empty answer would carry no length; an `OPTIONS` answer without
    // content must say 0 (RFC 9110 9.3.7).
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, max_forwards: Option<&'static str>) -> HttpRequest {
        let mut req = HttpRequest::new(Body::empty());
        *req.method_mut() = method;
        if let Some(v) = max_forwards {
            req.headers_mut()
                .insert(MAX_FORWARDS, HeaderValue::from_static(v));
        }
        req
    }

    #[test]
    fn options_and_trace_with_zero_are_answered_here() {
        let resp = answer_or_count_down(&mut request(Method::OPTIONS, Some("0"))).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[http::header::CONTENT_LENGTH], "0");
        let resp = answer_or_count_down(&mut request(Method::TRACE, Some("0"))).unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn a_positive_value_goes_upstream_one_less() {
        let mut req = request(Method::OPTIONS, Some("10"));
        assert!(answer_or_count_down(&mut req).is_none());
        assert_eq!(req.headers()[MAX_FORWARDS], "9");
        let mut req = request(Method::TRACE, Some("99999999999999999999999"));
        assert!(answer_or_count_down(&mut req).is_none());
        assert_eq!(req.headers()[MAX_FORWARDS], (u64::MAX - 1).to_string());
    }

    #[test]
    fn options_asterisk_is_answered_and_other_targets_are_not() {
        let mut req = request(Method::OPTIONS, None);
        *req.uri_mut() = http::Uri::from_static("*");
        assert_eq!(server_wide_options(&req).unwrap().status(), StatusCode::OK);
        *req.uri_mut() = http::Uri::from_static("/x");
        assert!(server_wide_options(&req).is_none());
        let mut req = request(Method::GET, None);
        *req.uri_mut() = http::Uri::from_static("*");
        assert!(server_wide_options(&req).is_none());
    }

    #[test]
    fn other_methods_and_malformed_values_pass_as_they_are() {
        let mut req = request(Method::GET, Some("0"));
        assert!(answer_or_count_down(&mut req).is_none());
        assert_eq!(req.headers()[MAX_FORWARDS], "0");
        for bad in ["", "-1", "1.0", " 3", "0x1"] {
            let mut req = request(Method::OPTIONS, None);
            req.headers_mut()
                .insert(MAX_FORWARDS, HeaderValue::from_str(bad).unwrap());
            assert!(answer_or_count_down(&mut req).is_none(), "{bad:?}");
            assert_eq!(req.headers()[MAX_FORWARDS], bad);
        }
        assert!(answer_or_count_down(&mut request(Method::OPTIONS, None)).is_none());
    }
}
