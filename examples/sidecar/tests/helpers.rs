//! Tests of the sidecar tests' own helpers (parsers), which need no sidecar.

use crate::common;

use common::*;

#[test]
fn parses_curl_output_skipping_100_continue() {
    let out = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: b\r\n\r\nbody";
    let (status, proto, headers, body, interim) = parse_http_output(out);
    assert_eq!(status, 200);
    assert_eq!(proto, "HTTP/1.1");
    assert_eq!(headers, vec![("x-a".to_owned(), "b".to_owned())]);
    assert_eq!(body, b"body");
    assert_eq!(interim, vec![100]);
}

#[test]
fn sums_metrics() {
    let text = "# HELP x\nproxy_route_local_responses_total{route=\"r\",reason=\"no_route\"} 2\n\
                    proxy_listener_local_responses_total{listener=\"l\",reason=\"no_route\"} 3\n";
    assert_eq!(metric_sum(text, &["reason=\"no_route\""]), 5.0);
    assert_eq!(metric_sum(text, &["proxy_route_", "no_route"]), 2.0);
}
