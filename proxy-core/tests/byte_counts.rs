//! Listener byte counters count what each connection carried, for every protocol on
//! the listener: the first bytes read to tell the protocol apart, HTTP/1.1 heads and
//! bodies, and HTTP/2 frames both ways.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use proxy_core::Registry;
use proxy_test_support::{
    client, prometheus::sample, server::TestServer, timeout::with_timeout, upstream::Upstream, yaml,
};

fn stat(text: &str, name: &str) -> f64 {
    sample(text, &format!(r#"{name}{{listener="web"}}"#))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_and_tx_bytes_count_http1_and_h2c() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::named("up");
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[up.addr], &[])],
        );
        let admin = proxy_test_support::ports::free_addr();
        let cfg = format!("admin: {{ address: {admin} }}\n{cfg}");
        let server = TestServer::start(&cfg, Registry::default());
        let addr = server.addr("web");

        // HTTP/1.1 with a 100 KiB body: the head is read while sniffing, the body after.
        let body = Bytes::from(vec![b'x'; 100 * 1024]);
        let req = client::build(addr, Method::POST, "/", &[], body).expect("request");
        let resp = client::send(addr, req).await.expect("h1 response");
        assert_eq!(resp.status, 200);
        let (_, text) = server.admin_get("/stats/prometheus").await;
        let rx_h1 = stat(&text, "proxy_listener_rx_bytes_total");
        let tx_h1 = stat(&text, "proxy_listener_tx_bytes_total");
        assert!(rx_h1 >= 100.0 * 1024.0, "h1 rx_bytes {rx_h1}");
        assert!(tx_h1 > 0.0, "h1 tx_bytes {tx_h1}");
        // The upstream side counts at the endpoint: the body went out, the answer in.
        let endpoint = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("proxy_endpoint_upstream_{name}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert!(endpoint("tx_bytes_total") >= 100.0 * 1024.0, "{text}");
        assert!(endpoint("rx_bytes_total") > 0.0, "{text}");

        // h2c: frames both ways count too.
        let req = client::build(
            addr,
            Method::POST,
            "/",
            &[],
            Bytes::from(vec![b'y'; 10_000]),
        )
        .expect("request");
        let resp = client::send_h2c(addr, req).await.expect("h2 response");
        assert_eq!(resp.status, 200);
        let (_, text) = server.admin_get("/stats/prometheus").await;
        let rx = stat(&text, "proxy_listener_rx_bytes_total");
        let tx = stat(&text, "proxy_listener_tx_bytes_total");
        assert!(rx >= rx_h1 + 10_000.0, "h2 rx_bytes {rx} after {rx_h1}");
        assert!(tx > tx_h1, "h2 tx_bytes {tx} after {tx_h1}");
    })
    .await;
}
