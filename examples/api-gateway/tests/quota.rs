//! `configs/quota.yaml` end to end: two api-gateway processes on that config (fresh
//! ports, a real `redis-server` the test starts, an echo upstream) enforce one
//! quota per consumer between them, each consumer on its own, with the quota
//! headers and the `redis_quota` counters on `/stats/prometheus`; and the config
//! passes `--validate` without a Redis. Fails (does not skip) without redis-server:
//! `scripts/deps/proxy-filters-redis.sh` installs it.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{net::SocketAddr, time::Duration};

use common::{example_file, metric, rewrite, validates, Gateway};
use proxy_test_support::{
    client, free_addr, redis::RedisServer, upstream::response, with_timeout, Upstream,
};

const LIMIT: Duration = Duration::from_secs(60);

/// `configs/quota.yaml` on fresh ports, counting in `redis`, a quota of 4 a minute.
fn quota_config(
    listen: SocketAddr,
    admin: SocketAddr,
    redis: &RedisServer,
    up: &Upstream,
) -> String {
    rewrite(
        &example_file("configs/quota.yaml"),
        &[
            ("127.0.0.1:18091", &listen.to_string()),
            ("127.0.0.1:18003", &admin.to_string()),
            ("redis://127.0.0.1:6379/0", &format!("{}/0", redis.url())),
            ("\"127.0.0.1:18099\"", &format!("\"{}\"", up.addr)),
            ("limit: 100", "limit: 4"),
            ("window: 1m", "window: 1h"),
        ],
    )
}

async fn call(addr: SocketAddr, key: &str) -> client::Response {
    client::get(addr, "/api/echo", &[("x-api-key", key)]).await
}

#[tokio::test]
async fn two_gateways_enforce_one_quota_per_consumer() {
    with_timeout(LIMIT, async {
        let redis = RedisServer::start();
        let up = Upstream::http(|_| response(200, "echo"));
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let (listen, admin) = (free_addr(), free_addr());
            let gw = Gateway::start(Some(&quota_config(listen, admin, &redis, &up)), admin).await;
            gateways.push((gw, listen));
        }
        // Four for demo-app, alternating between the gateways, then none on either.
        for i in 0..4 {
            let resp = call(gateways[i % 2].1, "demo-key").await;
            assert_eq!(resp.status, 200, "request {i}");
            assert_eq!(resp.headers["x-ratelimit-limit"], "4");
            assert_eq!(
                resp.headers["x-ratelimit-remaining"],
                (3 - i).to_string().as_str()
            );
        }
        for (_, addr) in &gateways {
            let limited = call(*addr, "demo-key").await;
            assert_eq!(limited.status, 429, "{}", limited.text());
            assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
            assert!(limited.headers.contains_key("retry-after"));
        }
        // other-app has its own quota; a caller without a key never gets that far.
        assert_eq!(call(gateways[1].1, "second-key").await.status, 200);
        assert_eq!(
            client::get(gateways[0].1, "/api/echo", &[]).await.status,
            401
        );
        assert_eq!(up.hits(), 5);

        let mut allowed = 0.0;
        for (gw, _) in &gateways {
            let text = gw.metrics().await;
            let quota = [
                "proxy_filters_redis_quota_decisions_total",
                "filter=\"echo-quota\"",
            ];
            allowed += metric(&text, &[quota[0], quota[1], "decision=\"allowed\""]);
            assert_eq!(
                metric(&text, &[quota[0], quota[1], "decision=\"failed_open\""]),
                0.0,
                "{text}"
            );
        }
        assert_eq!(allowed, 5.0);
    })
    .await;
}

#[tokio::test]
async fn the_quota_config_validates_without_redis() {
    with_timeout(LIMIT, async {
        let (valid, out) = validates("configs/quota.yaml").await;
        assert!(valid, "{out:?}");
    })
    .await;
}
