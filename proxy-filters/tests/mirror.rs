//! Traffic mirroring through a real proxy: the shadow receives a copy (head and
//! body), while the client's latency and result do not change when the shadow is
//! slow or down; bodies over the cap are not mirrored; a missing shadow cluster is
//! a config error.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, listener, start, try_start, upstream};
use http_body_util::Full;
use proxy_test_support::{
    client::{self, get},
    closed_port, eventually, with_timeout,
};

fn mirror(cluster: &str, extra: &str) -> String {
    format!("[{{typed: mirror, config: {{cluster: {cluster}, max_body_bytes: 1024 {extra}}}}}]")
}

#[tokio::test]
async fn shadow_receives_a_copy_with_the_body() {
    with_timeout(Duration::from_secs(30), async {
        let main = upstream("main", Duration::ZERO);
        let shadow = upstream("shadow", Duration::ZERO);
        let proxy = start(&config(
            &[listener(
                "edge",
                &mirror("shadow", ", host_suffix: -shadow"),
                "main",
            )],
            &[("main", main.addr), ("shadow", shadow.addr)],
        ));
        let addr = proxy.addr("edge");
        let req = http::Request::post("/orders?id=7")
            .header("host", "shop.local")
            .header("x-trace", "abc")
            .body(Full::new(Bytes::from_static(b"{\"qty\":3}")))
            .unwrap();
        let got = client::send(addr, req).await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "main");
        assert!(
            eventually(Duration::from_secs(5), || shadow.hits() == 1).await,
            "no copy arrived"
        );
        let copy = &shadow.requests()[0];
        assert_eq!(copy.method, "POST");
        assert_eq!(copy.uri.path_and_query().unwrap().as_str(), "/orders?id=7");
        assert_eq!(copy.headers["x-trace"], "abc");
        assert_eq!(copy.headers["host"], "shop.local-shadow");
        assert_eq!(copy.body, "{\"qty\":3}");
        assert_eq!(main.requests()[0].body, "{\"qty\":3}");
        assert_eq!(main.requests()[0].headers["host"], "shop.local");
    })
    .await;
}

#[tokio::test]
async fn slow_or_down_shadow_changes_nothing_for_the_client() {
    with_timeout(Duration::from_secs(60), async {
        let main = upstream("main", Duration::ZERO);
        let slow = upstream("slow", Duration::from_secs(3));
        let down = closed_port();
        let proxy = start(&config(
            &[
                listener("plain", "[]", "main"),
                listener("to-slow", &mirror("slow", ", timeout: 10s"), "main"),
                listener("to-down", &mirror("down", ""), "main"),
            ],
            &[("main", main.addr), ("slow", slow.addr), ("down", down)],
        ));
        let mut worst = [Duration::ZERO; 3];
        for _ in 0..20 {
            for (i, l) in ["plain", "to-slow", "to-down"].iter().enumerate() {
                let t = Instant::now();
                let got = get(proxy.addr(l), "/", &[]).await;
                assert_eq!(got.status, 200, "{l}");
                assert_eq!(got.body, "main", "{l}");
                worst[i] = worst[i].max(t.elapsed());
            }
        }
        // The slow shadow takes 3s per copy; the client must never wait for it.
        assert!(
            worst[1] < Duration::from_millis(500),
            "slow shadow: {:?}",
            worst[1]
        );
        assert!(
            worst[2] < Duration::from_millis(500),
            "down shadow: {:?}",
            worst[2]
        );
        assert!(slow.hits() >= 1, "the slow shadow got no copy");
    })
    .await;
}

#[tokio::test]
async fn bodies_over_the_cap_are_forwarded_but_not_mirrored() {
    with_timeout(Duration::from_secs(30), async {
        let main = upstream("main", Duration::ZERO);
        let shadow = upstream("shadow", Duration::ZERO);
        let proxy = start(&config(
            &[listener("edge", &mirror("shadow", ""), "main")],
            &[("main", main.addr), ("shadow", shadow.addr)],
        ));
        let addr = proxy.addr("edge");
        let big = Bytes::from(vec![b'x'; 4096]);
        let req = http::Request::post("/big")
            .header("host", "a")
            .body(Full::new(big.clone()))
            .unwrap();
        let got = client::send(addr, req).await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(main.requests()[0].body, big);
        // A small one after it is mirrored: the big one was skipped, not queued.
        let req = http::Request::post("/small")
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"s")))
            .unwrap();
        assert_eq!(client::send(addr, req).await.unwrap().status, 200);
        assert!(eventually(Duration::from_secs(5), || shadow.hits() == 1).await);
        assert_eq!(shadow.requests()[0].uri.path(), "/small");
    })
    .await;
}

#[tokio::test]
async fn sampling_mirrors_a_share() {
    with_timeout(Duration::from_secs(60), async {
        let main = upstream("main", Duration::ZERO);
        let shadow = upstream("shadow", Duration::ZERO);
        let proxy = start(&config(
            &[listener(
                "edge",
                &mirror("shadow", ", sample_percent: 20, seed: 3"),
                "main",
            )],
            &[("main", main.addr), ("shadow", shadow.addr)],
        ));
        let addr = proxy.addr("edge");
        let n = 200;
        for _ in 0..n {
            assert_eq!(get(addr, "/", &[]).await.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let copies = shadow.hits();
        // 4.5 standard deviations around 40.
        assert!((15..=65).contains(&copies), "{copies} copies of {n}");
    })
    .await;
}

#[test]
fn missing_shadow_cluster_is_a_config_error() {
    let up = closed_port();
    let err = try_start(&config(
        &[listener("edge", &mirror("nowhere", ""), "main")],
        &[("main", up)],
    ))
    .err()
    .unwrap();
    assert!(
        err.contains("listeners[0].http_filters[0].config.cluster: unknown cluster \"nowhere\""),
        "{err}"
    );
    let err = try_start(&config(
        &[listener(
            "edge",
            &mirror("main", ", sample_percent: 101"),
            "main",
        )],
        &[("main", up)],
    ))
    .err()
    .unwrap();
    assert!(
        err.contains("listeners[0].http_filters[0].config.sample_percent: 101"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_without_the_shadow_cluster_is_refused_and_the_old_config_serves() {
    with_timeout(Duration::from_secs(30), async {
        let main = upstream("main", Duration::ZERO);
        let shadow = upstream("shadow", Duration::ZERO);
        let proxy = start(&config(
            &[listener("edge", &mirror("shadow", ""), "main")],
            &[("main", main.addr), ("shadow", shadow.addr)],
        ));
        let without = config(
            &[listener("edge", &mirror("shadow", ""), "main")],
            &[("main", main.addr)],
        );
        let text = proxy.reload(&without).unwrap_err();
        assert!(
            text.contains("config.cluster: unknown cluster \"shadow\""),
            "{text}"
        );
        assert_eq!(get(proxy.addr("edge"), "/", &[]).await.status, 200);
        assert!(
            eventually(Duration::from_secs(5), || shadow.hits() == 1).await,
            "the old config stopped mirroring"
        );
    })
    .await;
}
