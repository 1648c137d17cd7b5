//! An HTTP/2 upstream's stream limit (`SETTINGS_MAX_CONCURRENT_STREAMS`), on real
//! sockets: the proxy puts no more requests on a connection than the upstream allows
//! and opens more connections for the rest, rather than queueing them inside one;
//! through an upstream with a low limit that goes away every few streams, no POST is
//! processed twice or lost, even one waiting inside a connection for a stream; and with `pool.max_requests_per_connection` set to the upstream's
//! own bound, no request is turned away at all.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{
    client,
    server::TestServer,
    timeout::with_timeout,
    upstream::{spawn_raw, Upstream},
    yaml,
};

/// The `x-id` of every request an upstream processed.
type Processed = Arc<Mutex<Vec<String>>>;

/// An HTTP/2 upstream allowing `stream_limit` streams at a time on a connection,
/// answering `200 ok` after `delay`, and going away gracefully after `go_away_after`
/// streams when set; its hits count the requests it processed, `processed` their ids.
fn h2_upstream(
    stream_limit: u32,
    delay: Duration,
    go_away_after: Option<usize>,
    processed: Processed,
) -> Upstream {
    spawn_raw(move |tcp, stats| {
        let processed = processed.clone();
        async move {
            let handshake = h2::server::Builder::new()
                .max_concurrent_streams(stream_limit)
                .handshake(tcp);
            let Ok(mut conn) = handshake.await else {
                return;
            };
            let mut seen = 0;
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                seen += 1;
                stats.hit();
                let id = req.headers().get("x-id").and_then(|v| v.to_str().ok());
                if let Ok(mut processed) = processed.lock() {
                    processed.push(id.unwrap_or("-").to_owned());
                }
                tokio::spawn(async move {
                    // The whole request body, then the answer.
                    let mut body = req.into_body();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    tokio::time::sleep(delay).await;
                    if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                });
                if go_away_after == Some(seen) {
                    conn.graceful_shutdown();
                }
            }
        }
    })
}

fn start(up: &Upstream) -> TestServer {
    start_with(up, &["protocol: http2"])
}

fn start_with(up: &Upstream, cluster: &[&str]) -> TestServer {
    let cfg = yaml::config(
        &[yaml::listener("web", "app", &[])],
        &[yaml::cluster("app", &[up.addr], cluster)],
    );
    TestServer::start(&cfg, Registry::default())
}

/// Sends `total` POSTs with a small body and an `x-id` header (their index),
/// `concurrency` at a time, each on its own HTTP/1.1 connection; their statuses by id.
async fn post_many(addr: std::net::SocketAddr, total: usize, concurrency: usize) -> Vec<u16> {
    client::many(total, concurrency, |id| async move {
        let body = Bytes::from_static(b"a request body");
        let name = id.to_string();
        let headers = [("x-id", name.as_str())];
        let resp = client::request(addr, http::Method::POST, "/", &headers, body).await;
        resp.map_or(0, |resp| resp.status.as_u16())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_above_the_upstream_stream_limit_go_on_more_connections() {
    with_timeout(Duration::from_secs(60), async {
        let up = h2_upstream(4, Duration::from_millis(20), None, Processed::default());
        let server = start(&up);
        let statuses = post_many(server.addr("web"), 200, 40).await;
        let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
        assert_eq!(up.hits(), 200, "each request processed once");
        // 40 in flight, four to a connection: about ten connections, not one with
        // 36 requests waiting in it.
        assert!(
            up.connections() >= 5,
            "more connections for the requests above the limit: {}",
            up.connections()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_post_is_processed_twice_by_an_upstream_going_away_often() {
    with_timeout(Duration::from_secs(60), async {
        // Four streams at a time, gone after every 25, 50 POSTs in flight.
        let processed = Processed::default();
        let up = h2_upstream(4, Duration::from_millis(1), Some(25), processed.clone());
        let server = start(&up);
        let statuses = post_many(server.addr("web"), 1000, 50).await;
        let processed = processed.lock().expect("the ids").clone();
        let mut times: HashMap<&str, usize> = HashMap::new();
        for id in &processed {
            *times.entry(id.as_str()).or_default() += 1;
        }
        let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "processed more than once: {twice:?}");
        for (id, status) in statuses.iter().enumerate() {
            if *status == 200 {
                assert!(
                    times.contains_key(id.to_string().as_str()),
                    "{id} answered unprocessed"
                );
            }
        }
        // Each POST's stream was either processed or named unprocessed by the GOAWAY,
        // and then sent again: none is lost.
        let failed = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(failed, 0, "{failed} of 1000 failed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_waiting_in_a_connection_for_a_stream_survive_its_going_away() {
    with_timeout(Duration::from_secs(60), async {
        // One connection at a time (the cluster's cap), two streams at a time, gone
        // after every 10: most of the 20 POSTs in flight wait inside the connection
        // for a stream when its GOAWAY comes, and are sent again on the next one.
        let processed = Processed::default();
        let up = h2_upstream(2, Duration::from_millis(2), Some(10), processed.clone());
        let cluster = [
            "protocol: http2",
            "circuit_breakers: { max_connections: 1 }",
        ];
        let server = start_with(&up, &cluster);
        let statuses = post_many(server.addr("web"), 300, 20).await;
        let failed = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(failed, 0, "{failed} of 300 failed: {statuses:?}");
        assert_eq!(up.hits(), 300, "each request processed once");
        assert!(up.connections() >= 30, "{} connections", up.connections());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_bounded_to_the_upstreams_own_bound_turn_nothing_away() {
    with_timeout(Duration::from_secs(60), async {
        // The upstream goes away after 10 streams; so does each connection the proxy
        // opens to it.
        let processed = Processed::default();
        let up = h2_upstream(100, Duration::from_millis(1), Some(10), processed.clone());
        let cluster = [
            "protocol: http2",
            "pool: { max_requests_per_connection: 10 }",
        ];
        let server = start_with(&up, &cluster);
        let statuses = post_many(server.addr("web"), 500, 50).await;
        let failed = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(failed, 0, "{failed} of 500 failed");
        assert_eq!(up.hits(), 500, "each request processed once");
        assert_eq!(processed.lock().expect("the ids").len(), 500);
        assert!(up.connections() >= 50, "{} connections", up.connections());
    })
    .await;
}
