//! The byte counters of an endpoint reached over HTTP/2 (`protocol: http2`):
//! `proxy_endpoint_upstream_tx_bytes_total` counts what the proxy sent to the
//! endpoint and `proxy_endpoint_upstream_rx_bytes_total` what it received, frames,
//! headers and bodies, so each grows by at least the body of every exchange.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, prometheus::sample, upstream::response, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(60);

/// Request and response body sizes, one exchange each.
const EXCHANGES: [(usize, usize); 3] = [(10_000, 30_000), (100_000, 5_000), (1, 200_000)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_endpoint_counts_the_bytes_of_every_exchange() {
    with_timeout(LIMIT, async {
        // Answers with as many bytes as `x-reply-bytes` asks for.
        let up = Upstream::http(|seen| {
            let n = seen
                .header("x-reply-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            response(200, vec![b'r'; n])
        });
        let mut cfg = ConfigBuilder::new()
            .routes(vec![route("all", "/", "h2", "")])
            .cluster(cluster("h2", up.addr, "protocol: http2"));
        let sc = Sidecar::start_with(&mut cfg).await;
        let labels = format!("{{cluster=\"h2\",endpoint=\"{}\"}}", up.addr);
        let counters = |text: &str| {
            let read = |name: &str| {
                let selector = format!("proxy_endpoint_upstream_{name}_bytes_total{labels}");
                sample(text, &selector).unwrap_or_else(|| panic!("no {selector} in\n{text}"))
            };
            (read("tx"), read("rx"))
        };

        let (mut tx, mut rx) = counters(&sc.metrics().await);
        assert_eq!((tx, rx), (0.0, 0.0), "nothing exchanged yet");
        let mut client = client::H1Client::new(cfg.listen);
        for (sent, answered) in EXCHANGES {
            let r = client
                .request(
                    Method::POST,
                    "/bytes",
                    &[("x-reply-bytes", &answered.to_string())],
                    Bytes::from(vec![b's'; sent]),
                )
                .await
                .unwrap_or_else(|e| panic!("POST {sent} bytes: {e}"));
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.body.len(), answered);

            let (tx_now, rx_now) = counters(&sc.metrics().await);
            assert!(
                tx_now - tx >= sent as f64,
                "tx grew by {} for a {sent}-byte request body",
                tx_now - tx
            );
            assert!(
                rx_now - rx >= answered as f64,
                "rx grew by {} for a {answered}-byte response body",
                rx_now - rx
            );
            (tx, rx) = (tx_now, rx_now);
        }
        assert!(
            up.requests()
                .iter()
                .all(|seen| seen.version == http::Version::HTTP_2),
            "the cluster speaks h2c"
        );
        assert_eq!(up.connections(), 1, "one h2 connection carried them all");
    })
    .await;
}
