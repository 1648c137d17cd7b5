//! Bolt response statuses and how they map to and from HTTP.
//!
//! | proxy failure (`x-proxy-error`)        | Bolt status                |
//! |----------------------------------------|----------------------------|
//! | `no_route`                             | `NO_PROCESSOR` (0x0006)    |
//! | `no_endpoints`, `connect_failure`      | `CLIENT_SEND_ERROR` (0x0008) |
//! | `upstream_timeout`, `request_timeout`  | `TIMEOUT` (0x0007)         |
//! | `overflow`, `rate_limited`, `overloaded` | `SERVER_THREADPOOL_BUSY` (0x0004) |
//! | `server_closing` (a call read while draining) | `SERVER_THREADPOOL_BUSY` (0x0004) |
//! | `upstream_reset`                       | `CONNECTION_CLOSED` (0x0010) |
//! | `bad_request`, `malformed`             | `CODEC_EXCEPTION` (0x0009) |
//! | `body_too_large`, `response_too_large` | `CODEC_EXCEPTION` (0x0009) |
//! | `upstream_protocol_error`              | `CODEC_EXCEPTION` (0x0009) |
//! | anything else                          | by HTTP status, below      |
//!
//! HTTP status to Bolt: 2xx `SUCCESS`, 400 `CODEC_EXCEPTION`, 404 `NO_PROCESSOR`,
//! 408/504 `TIMEOUT`, 429/503 `SERVER_THREADPOOL_BUSY`, 502 `CONNECTION_CLOSED`,
//! other 4xx `ERROR`, other 5xx `SERVER_EXCEPTION`. Bolt to HTTP is the reverse
//! ([`to_http`]); the exact Bolt status also travels in the response extension, so a
//! Bolt-to-Bolt call keeps it unchanged.
//!
//! Bolt has no "server closing" status nor a go-away frame: a call that arrives on a
//! draining connection is refused with `SERVER_THREADPOOL_BUSY`, the status a Bolt
//! server sends for work it did not start, which SOFARPC clients treat as safe to
//! retry elsewhere (sofa-rpc-node fails the call at once with an error).

use http::StatusCode;

/// The call succeeded.
pub const SUCCESS: u16 = 0x0000;
/// A generic error.
pub const ERROR: u16 = 0x0001;
/// The server's processing threw.
pub const SERVER_EXCEPTION: u16 = 0x0002;
/// Unknown.
pub const UNKNOWN: u16 = 0x0003;
/// The server's thread pool is busy (overload).
pub const SERVER_THREADPOOL_BUSY: u16 = 0x0004;
/// A communication error.
pub const ERROR_COMM: u16 = 0x0005;
/// No processor for the request (no such service).
pub const NO_PROCESSOR: u16 = 0x0006;
/// The call timed out.
pub const TIMEOUT: u16 = 0x0007;
/// The request could not be sent.
pub const CLIENT_SEND_ERROR: u16 = 0x0008;
/// The frame could not be encoded or decoded.
pub const CODEC_EXCEPTION: u16 = 0x0009;
/// The connection closed before the answer.
pub const CONNECTION_CLOSED: u16 = 0x0010;
/// The server could not serialize the response.
pub const SERVER_SERIAL_EXCEPTION: u16 = 0x0011;
/// The server could not deserialize the request.
pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x0012;

/// The Bolt status for a proxy-side failure.
pub fn for_failure(reason: &str, status: StatusCode) -> u16 {
    match reason {
        "no_route" => NO_PROCESSOR,
        "no_endpoints" | "connect_failure" => CLIENT_SEND_ERROR,
        "upstream_timeout" | "request_timeout" => TIMEOUT,
        "overflow" | "rate_limited" | "overloaded" | "server_closing" => SERVER_THREADPOOL_BUSY,
        "upstream_reset" => CONNECTION_CLOSED,
        "bad_request"
        | "malformed"
        | "body_too_large"
        | "response_too_large"
        | "upstream_protocol_error" => CODEC_EXCEPTION,
        _ => from_http(status),
    }
}

/// The Bolt status for an HTTP status.
pub fn from_http(status: StatusCode) -> u16 {
    match status.as_u16() {
        200..=299 => SUCCESS,
        400 => CODEC_EXCEPTION,
        404 => NO_PROCESSOR,
        408 | 504 => TIMEOUT,
        429 | 503 => SERVER_THREADPOOL_BUSY,
        502 => CONNECTION_CLOSED,
        s if (400..500).contains(&s) => ERROR,
        _ => SERVER_EXCEPTION,
    }
}

/// The HTTP status for a Bolt status.
pub fn to_http(status: u16) -> StatusCode {
    match status {
        SUCCESS => StatusCode::OK,
        CODEC_EXCEPTION | SERVER_DESERIAL_EXCEPTION => StatusCode::BAD_REQUEST,
        NO_PROCESSOR => StatusCode::NOT_FOUND,
        TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        SERVER_THREADPOOL_BUSY => StatusCode::SERVICE_UNAVAILABLE,
        CONNECTION_CLOSED | ERROR_COMM | CLIENT_SEND_ERROR => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message for a Bolt error status.
pub fn message(status: u16) -> &'static str {
    match status {
        SUCCESS => "success",
        SERVER_THREADPOOL_BUSY => "server thread pool busy",
        NO_PROCESSOR => "no processor for the service",
        TIMEOUT => "invocation timed out",
        CLIENT_SEND_ERROR => "request could not be sent",
        CODEC_EXCEPTION => "codec exception",
        CONNECTION_CLOSED => "connection closed",
        _ => "server exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_round_trip_of_mapped_statuses() {
        for s in [
            SUCCESS,
            CODEC_EXCEPTION,
            NO_PROCESSOR,
            TIMEOUT,
            SERVER_THREADPOOL_BUSY,
            CONNECTION_CLOSED,
        ] {
            assert_eq!(from_http(to_http(s)), s);
        }
        assert_eq!(for_failure("no_route", StatusCode::NOT_FOUND), NO_PROCESSOR);
        assert_eq!(for_failure("rbac_denied", StatusCode::FORBIDDEN), ERROR);
        assert_eq!(
            for_failure("server_closing", StatusCode::SERVICE_UNAVAILABLE),
            SERVER_THREADPOOL_BUSY
        );
        // An upstream's answer that could not be read, against one that never came.
        assert_eq!(
            for_failure("upstream_protocol_error", StatusCode::BAD_GATEWAY),
            CODEC_EXCEPTION
        );
        assert_eq!(
            for_failure("upstream_reset", StatusCode::BAD_GATEWAY),
            CONNECTION_CLOSED
        );
    }
}
