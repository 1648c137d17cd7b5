//! Dubbo response statuses and how they map to and from HTTP.
//!
//! | proxy failure (`x-proxy-error`)          | Dubbo status                        |
//! |------------------------------------------|-------------------------------------|
//! | `no_route`, `no_endpoints`               | `SERVICE_NOT_FOUND` (60)            |
//! | `connect_failure`, `upstream_reset`      | `SERVER_ERROR` (80)                 |
//! | `upstream_timeout`, `request_timeout`    | `SERVER_TIMEOUT` (31)               |
//! | `overflow`, `rate_limited`, `overloaded` | `SERVER_THREADPOOL_EXHAUSTED_ERROR` (100) |
//! | `server_closing` (a call read while draining) | `SERVER_THREADPOOL_EXHAUSTED_ERROR` (100) |
//! | `bad_request`, `malformed`, `body_too_large` | `BAD_REQUEST` (40)              |
//! | `response_too_large`, `upstream_protocol_error` | `BAD_RESPONSE` (50)         |
//! | anything else                            | by HTTP status, below               |
//!
//! HTTP status to Dubbo: 2xx `OK`, 400 `BAD_REQUEST`, 404 `SERVICE_NOT_FOUND`,
//! 408/504 `SERVER_TIMEOUT`, 429/503 `SERVER_THREADPOOL_EXHAUSTED_ERROR`, other 4xx
//! `SERVICE_ERROR`, other 5xx `SERVER_ERROR`. Error responses carry the message as a
//! hessian2 string body, as Dubbo servers send it.
//!
//! A call that arrives on a draining connection is refused, not forwarded: the
//! connection first sends the read-only event (as a Dubbo server does when it shuts
//! down), then answers such a call with `SERVER_THREADPOOL_EXHAUSTED_ERROR`, what a
//! Dubbo server whose executor is shut down answers; Dubbo clients retry it on
//! another provider.

use http::StatusCode;

/// Success.
pub const OK: u8 = 20;
/// The client gave up waiting.
pub const CLIENT_TIMEOUT: u8 = 30;
/// The server gave up waiting.
pub const SERVER_TIMEOUT: u8 = 31;
/// The channel is inactive.
pub const CHANNEL_INACTIVE: u8 = 35;
/// The request could not be decoded.
pub const BAD_REQUEST: u8 = 40;
/// The response could not be decoded.
pub const BAD_RESPONSE: u8 = 50;
/// No such service.
pub const SERVICE_NOT_FOUND: u8 = 60;
/// The service failed.
pub const SERVICE_ERROR: u8 = 70;
/// The server failed.
pub const SERVER_ERROR: u8 = 80;
/// The client failed.
pub const CLIENT_ERROR: u8 = 90;
/// The server's thread pool is exhausted (overload).
pub const SERVER_THREADPOOL_EXHAUSTED_ERROR: u8 = 100;

/// The Dubbo status for a proxy-side failure.
pub fn for_failure(reason: &str, status: StatusCode) -> u8 {
    match reason {
        "no_route" | "no_endpoints" => SERVICE_NOT_FOUND,
        "connect_failure" | "upstream_reset" => SERVER_ERROR,
        "upstream_timeout" | "request_timeout" => SERVER_TIMEOUT,
        "overflow" | "rate_limited" | "overloaded" | "server_closing" => {
            SERVER_THREADPOOL_EXHAUSTED_ERROR
        }
        "bad_request" | "malformed" | "body_too_large" => BAD_REQUEST,
        "response_too_large" | "upstream_protocol_error" => BAD_RESPONSE,
        _ => from_http(status),
    }
}

/// The Dubbo status for an HTTP status.
pub fn from_http(status: StatusCode) -> u8 {
    match status.as_u16() {
        200..=299 => OK,
        400 => BAD_REQUEST,
        404 => SERVICE_NOT_FOUND,
        408 | 504 => SERVER_TIMEOUT,
        429 | 503 => SERVER_THREADPOOL_EXHAUSTED_ERROR,
        s if (400..500).contains(&s) => SERVICE_ERROR,
        _ => SERVER_ERROR,
    }
}

/// The HTTP status for a Dubbo status.
pub fn to_http(status: u8) -> StatusCode {
    match status {
        OK => StatusCode::OK,
        CLIENT_TIMEOUT | SERVER_TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        BAD_REQUEST => StatusCode::BAD_REQUEST,
        SERVICE_NOT_FOUND => StatusCode::NOT_FOUND,
        SERVER_THREADPOOL_EXHAUSTED_ERROR => StatusCode::SERVICE_UNAVAILABLE,
        CHANNEL_INACTIVE | BAD_RESPONSE => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_statuses_round_trip() {
        for s in [
            OK,
            SERVER_TIMEOUT,
            BAD_REQUEST,
            SERVICE_NOT_FOUND,
            SERVER_THREADPOOL_EXHAUSTED_ERROR,
            SERVER_ERROR,
        ] {
            assert_eq!(from_http(to_http(s)), s);
        }
        assert_eq!(
            for_failure("upstream_timeout", StatusCode::GATEWAY_TIMEOUT),
            SERVER_TIMEOUT
        );
        assert_eq!(
            for_failure("server_closing", StatusCode::SERVICE_UNAVAILABLE),
            SERVER_THREADPOOL_EXHAUSTED_ERROR
        );
        assert_eq!(
            for_failure("upstream_protocol_error", StatusCode::BAD_GATEWAY),
            BAD_RESPONSE
        );
    }
}
