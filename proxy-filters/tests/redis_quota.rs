//! Fleet-wide quotas through a real `redis-server` (started per test on a loopback
//! port; the tests fail when it is not installed, see
//! `scripts/deps/proxy-filters-redis.sh`): two gateways sharing one quota with the
//! quota headers, the over-quota verdict kept without Redis round trips, window
//! rollover, failing open and closed when Redis is killed mid-run and recovering
//! when it is back, a hung Redis answered by the failure mode at the timeout, the local floor, and config errors naming the field.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{config, listener, start, try_start, upstream};
use proxy_test_support::{
    client::{self, get},
    eventually_async, free_addr, prometheus,
    redis::RedisServer,
    with_timeout, TestServer, Upstream,
};

/// A gateway with an admin listener and a `redis_quota` named `api` on listener
/// `edge` (`rules`: the section's fields after `name` and `redis`).
fn gateway(redis: &RedisServer, up: SocketAddr, rules: &str) -> (TestServer, SocketAddr) {
    let admin = free_addr();
    (
        start(&gateway_yaml(admin, &redis_fields(redis), up, rules, "")),
        admin,
    )
}

/// A `redis-server`, a backend, and a [`gateway`] counting in it with `rules`.
struct Quota {
    redis: RedisServer,
    up: Upstream,
    /// Kept running while the test holds this.
    _gw: TestServer,
    admin: SocketAddr,
    /// The gateway's listener `edge`.
    addr: SocketAddr,
}

impl Quota {
    fn start(rules: &str) -> Self {
        let redis = RedisServer::start();
        let up = upstream("backend", Duration::ZERO);
        let (gw, admin) = gateway(&redis, up.addr, rules);
        let addr = gw.addr("edge");
        Self {
            redis,
            up,
            _gw: gw,
            admin,
            addr,
        }
    }
}

/// The `redis` section's fields for `redis`: its URL and a 300 ms timeout.
fn redis_fields(redis: &RedisServer) -> String {
    format!("url: \"{}\", timeout: 300ms", redis.url())
}

/// The YAML of [`gateway`], its `redis` section `{REDIS}`, with `more` filters after
/// the quota (`, {typed: ...}`).
fn gateway_yaml(admin: SocketAddr, redis: &str, up: SocketAddr, rules: &str, more: &str) -> String {
    let filter = format!(
        "[{{typed: redis_quota, config: {{name: api, redis: {{{redis}}}, {rules}}}}}{more}]"
    );
    format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        config(&[listener("edge", &filter, "b")], &[("b", up)])
    )
}

async fn as_consumer(addr: SocketAddr, consumer: &str) -> client::Response {
    get(addr, "/", &[("x-consumer", consumer)]).await
}

fn header(resp: &client::Response, name: &str) -> Option<u64> {
    resp.headers
        .get(name)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// `proxy_filters_redis_quota_decisions_total{filter="api",decision=...}`.
async fn decisions(admin: SocketAddr, decision: &str) -> f64 {
    let text = client::get(admin, "/stats/prometheus", &[]).await.text();
    let series = format!(
        "proxy_filters_redis_quota_decisions_total{{filter=\"api\",decision=\"{decision}\"}}"
    );
    prometheus::sample(&text, &series).unwrap_or_else(|| panic!("{series}: {text}"))
}

/// Sleeps until a window of `secs` seconds has at least `room` left.
async fn fresh_window(secs: u64, room: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let len = Duration::from_secs(secs);
    let into = Duration::from_nanos((now.as_nanos() % len.as_nanos()) as u64);
    if len - into < room {
        tokio::time::sleep(len - into + Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_gateways_share_one_quota_with_headers() {
    with_timeout(Duration::from_secs(60), async {
        let redis = RedisServer::start();
        let up = upstream("backend", Duration::ZERO);
        let rules = "key: {header: x-consumer}, limit: 5, window: 1h, prefix: q";
        let (a, admin_a) = gateway(&redis, up.addr, rules);
        let (b, admin_b) = gateway(&redis, up.addr, rules);
        fresh_window(3600, Duration::from_secs(30)).await;
        let gateways = [a.addr("edge"), b.addr("edge")];
        for i in 0..5u64 {
            let resp = as_consumer(gateways[i as usize % 2], "alice").await;
            assert_eq!(resp.status, 200, "request {i}");
            assert_eq!(header(&resp, "x-ratelimit-limit"), Some(5));
            assert_eq!(header(&resp, "x-ratelimit-remaining"), Some(4 - i));
            let reset = header(&resp, "x-ratelimit-reset").unwrap();
            assert!((1..=3600).contains(&reset), "reset {reset}");
        }
        // The sixth, on either gateway, is over the quota both counted into.
        let limited = as_consumer(gateways[1], "alice").await;
        assert_eq!(limited.status, 429);
        assert_eq!(limited.headers["x-proxy-error"], "rate_limited");
        assert_eq!(header(&limited, "x-ratelimit-remaining"), Some(0));
        assert_eq!(
            header(&limited, "retry-after"),
            header(&limited, "x-ratelimit-reset")
        );
        assert_eq!(as_consumer(gateways[0], "alice").await.status, 429);
        assert_eq!(up.hits(), 5, "limited requests never reach the upstream");
        // Bob has a quota of his own.
        assert_eq!(as_consumer(gateways[0], "bob").await.status, 200);

        // Each gateway now knows alice is over: no more Redis round trips for her.
        let keys = redis.command("KEYS q:header=x-consumer:alice:*");
        let key = keys
            .lines()
            .find(|l| l.starts_with("q:"))
            .unwrap()
            .to_owned();
        let count = || redis.command(&format!("GET {key}"));
        let before = count();
        assert!(before.contains("\r\n7\r\n"), "6 + 1 counts: {before:?}");
        for g in gateways {
            assert_eq!(as_consumer(g, "alice").await.status, 429);
        }
        assert_eq!(count(), before, "answered from the kept verdict");
        let ttl = redis.command(&format!("TTL {key}"));
        let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
        assert!(
            (1..=3601).contains(&ttl),
            "the counter expires with its window: {ttl}"
        );

        assert_eq!(
            decisions(admin_a, "allowed").await + decisions(admin_b, "allowed").await,
            6.0
        );
        assert_eq!(decisions(admin_a, "limited_cached").await, 1.0);
        assert_eq!(decisions(admin_b, "limited_cached").await, 1.0);
        assert_eq!(decisions(admin_a, "failed_open").await, 0.0);
        let text = client::get(admin_a, "/stats/prometheus", &[]).await.text();
        let latency = "proxy_filters_redis_quota_redis_duration_seconds_count{filter=\"api\"}";
        assert!(prometheus::sample(&text, latency).unwrap() >= 3.0, "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_filter_and_its_verdicts() {
    with_timeout(Duration::from_secs(60), async {
        let redis = RedisServer::start();
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let rules = "key: {header: x-consumer}, limit: 1, window: 1h";
        let gw = start(&gateway_yaml(
            admin,
            &redis_fields(&redis),
            up.addr,
            rules,
            "",
        ));
        let addr = gw.addr("edge");
        fresh_window(3600, Duration::from_secs(30)).await;
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        assert_eq!(as_consumer(addr, "alice").await.status, 429);
        let more = ", {typed: header_rewrite, config: {request: {set: [{name: x-v, value: '2'}]}}}";
        gw.reload(&gateway_yaml(
            admin,
            &redis_fields(&redis),
            up.addr,
            rules,
            more,
        ))
        .unwrap();
        assert_eq!(as_consumer(addr, "alice").await.status, 429);
        assert_eq!(
            decisions(admin, "limited_cached").await,
            1.0,
            "the kept verdict answered"
        );
        assert_eq!(up.requests().last().unwrap().header("x-v"), None);
        assert_eq!(as_consumer(addr, "bob").await.status, 200);
        assert_eq!(
            up.requests().last().unwrap().header("x-v"),
            Some("2"),
            "the new config runs"
        );
    })
    .await;
}

#[tokio::test]
async fn a_new_window_starts_a_new_quota() {
    with_timeout(Duration::from_secs(60), async {
        let q = Quota::start("key: {header: x-consumer}, limit: 2, window: 2s");
        let addr = q.addr;
        fresh_window(2, Duration::from_millis(1500)).await;
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        let limited = as_consumer(addr, "alice").await;
        assert_eq!(limited.status, 429);
        let retry = header(&limited, "retry-after").unwrap();
        assert!((1..=2).contains(&retry), "retry-after {retry}");
        // The kept verdict ends with its window too.
        tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
        let fresh = as_consumer(addr, "alice").await;
        assert_eq!(fresh.status, 200, "a new window");
        assert_eq!(header(&fresh, "x-ratelimit-remaining"), Some(1));
    })
    .await;
}

#[tokio::test]
async fn fails_open_while_redis_is_down_and_recovers() {
    with_timeout(Duration::from_secs(60), async {
        let mut q = Quota::start("key: {header: x-consumer}, limit: 2, window: 1h, failure_mode: open");
        let addr = q.addr;
        let admin = q.admin;
        fresh_window(3600, Duration::from_secs(30)).await;
        assert_eq!(header(&as_consumer(addr, "alice").await, "x-ratelimit-remaining"), Some(1));

        q.redis.kill();
        for _ in 0..3 {
            let resp = as_consumer(addr, "alice").await;
            assert_eq!(resp.status, 200, "failing open");
            assert!(resp.headers.get("x-ratelimit-remaining").is_none(), "no count, no headers");
        }
        assert!(decisions(admin, "failed_open").await >= 3.0);
        let text = client::get(admin, "/stats/prometheus", &[]).await.text();
        let errors = ["timeout", "error"]
            .map(|k| {
                prometheus::sample(
                    &text,
                    &format!("proxy_filters_redis_quota_redis_errors_total{{filter=\"api\",kind=\"{k}\"}}"),
                )
                .unwrap()
            })
            .iter()
            .sum::<f64>();
        assert!(errors >= 3.0, "{text}");

        // Back (empty, as after a crash): counting resumes on the same gateway.
        q.redis.restart();
        let recovered = eventually_async(Duration::from_secs(15), || async {
            header(&as_consumer(addr, "bob").await, "x-ratelimit-remaining").is_some()
        })
        .await;
        assert!(recovered, "the gateway reconnects to the restarted redis");
        let resp = as_consumer(addr, "alice").await;
        assert_eq!(header(&resp, "x-ratelimit-remaining"), Some(1), "a fresh counter");
        assert_eq!(header(&as_consumer(addr, "alice").await, "x-ratelimit-remaining"), Some(0));
        assert_eq!(as_consumer(addr, "alice").await.status, 429);
    })
    .await;
}

#[tokio::test]
async fn fails_closed_while_redis_is_down_and_recovers() {
    with_timeout(Duration::from_secs(60), async {
        let mut q =
            Quota::start("key: {header: x-consumer}, limit: 100, window: 1h, failure_mode: closed");
        let addr = q.addr;
        let admin = q.admin;
        assert_eq!(as_consumer(addr, "alice").await.status, 200);

        q.redis.kill();
        let refused = as_consumer(addr, "alice").await;
        assert_eq!(refused.status, 503, "failing closed");
        assert_eq!(refused.headers["x-proxy-error"], "quota_unavailable");
        assert_eq!(refused.headers["retry-after"], "1");
        assert_eq!(q.up.hits(), 1);
        assert!(decisions(admin, "failed_closed").await >= 1.0);
        // A request without the key is not counted, so not refused either.
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        assert_eq!(decisions(admin, "unkeyed").await, 1.0);

        q.redis.restart();
        let recovered = eventually_async(Duration::from_secs(15), || async {
            as_consumer(addr, "alice").await.status == 200
        })
        .await;
        assert!(recovered, "the gateway reconnects to the restarted redis");
    })
    .await;
}

#[tokio::test]
async fn a_hung_redis_gets_the_failure_mode_within_the_timeout() {
    with_timeout(Duration::from_secs(60), async {
        let q =
            Quota::start("key: {header: x-consumer}, limit: 100, window: 1h, failure_mode: closed");
        let addr = q.addr;
        let admin = q.admin;
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        let hang = q.redis.hang(2.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let refused = as_consumer(addr, "alice").await;
        assert_eq!(refused.status, 503);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "answered after {took:?}, not at the 300ms timeout"
        );
        let text = client::get(admin, "/stats/prometheus", &[]).await.text();
        let timeouts =
            "proxy_filters_redis_quota_redis_errors_total{filter=\"api\",kind=\"timeout\"}";
        assert!(
            prometheus::sample(&text, timeouts).unwrap() >= 1.0,
            "{text}"
        );
        assert!(hang.join().unwrap().starts_with("+OK"));
        // Awake again: the same connection answers. The count sent before the hang
        // timed out here but ran in Redis when it woke: the refused request counted.
        let resp = as_consumer(addr, "alice").await;
        assert_eq!(resp.status, 200);
        assert_eq!(header(&resp, "x-ratelimit-remaining"), Some(97));
    })
    .await;
}

#[tokio::test]
async fn the_local_floor_holds_with_and_without_redis() {
    with_timeout(Duration::from_secs(60), async {
        let mut q = Quota::start(
            "key: {header: x-consumer}, limit: 100, window: 1h, \
             local: {descriptors: [{key: {header: x-consumer}, rate: {requests: 3, per: 1h}}]}",
        );
        let addr = q.addr;
        let admin = q.admin;
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        assert_eq!(as_consumer(addr, "alice").await.status, 200);
        q.redis.kill();
        assert_eq!(as_consumer(addr, "alice").await.status, 200, "failing open");
        let floor = as_consumer(addr, "alice").await;
        assert_eq!(
            floor.status, 429,
            "the local limit holds while redis is down"
        );
        assert_eq!(floor.headers["x-proxy-error"], "rate_limited");
        assert!(floor.headers.contains_key("retry-after"));
        assert!(
            floor.headers.get("x-ratelimit-limit").is_none(),
            "not a redis verdict"
        );
        q.redis.restart();
        assert_eq!(
            as_consumer(addr, "alice").await.status,
            429,
            "and while it is up"
        );
        assert_eq!(decisions(admin, "limited_local").await, 2.0);
        assert_eq!(q.up.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn the_password_and_database_are_used() {
    with_timeout(Duration::from_secs(60), async {
        let redis = RedisServer::start();
        assert!(redis
            .command("CONFIG SET requirepass s3cret")
            .starts_with("+OK"));
        let up = upstream("backend", Duration::ZERO);
        let rules =
            "key: {header: x-consumer}, limit: 5, window: 1h, failure_mode: closed, prefix: q";
        let with_db = |db: u16| {
            let fields = format!("{}, password: s3cret, db: {db}", redis_fields(&redis));
            start(&gateway_yaml(free_addr(), &fields, up.addr, rules, ""))
        };
        let (db2, db3) = (with_db(2), with_db(3));
        fresh_window(3600, Duration::from_secs(30)).await;
        let first = as_consumer(db2.addr("edge"), "alice").await;
        assert_eq!(header(&first, "x-ratelimit-remaining"), Some(4));
        let second = as_consumer(db2.addr("edge"), "alice").await;
        assert_eq!(header(&second, "x-ratelimit-remaining"), Some(3));
        let other_db = as_consumer(db3.addr("edge"), "alice").await;
        assert_eq!(
            header(&other_db, "x-ratelimit-remaining"),
            Some(4),
            "db 3 counts apart"
        );
        // Without the password there is no count: the failure mode.
        let (wrong, _admin) = gateway(&redis, up.addr, rules);
        let refused = as_consumer(wrong.addr("edge"), "alice").await;
        assert_eq!(refused.status, 503, "no password: {}", refused.text());
    })
    .await;
}

#[tokio::test]
async fn bad_sections_are_refused_naming_the_field() {
    let up = free_addr();
    for (rules, field) in [
        (
            "{redis: {url: 'redis://127.0.0.1:1'}, limit: 5, window: 1500ms}",
            "config.window",
        ),
        (
            "{redis: {url: 'http://127.0.0.1:1'}, limit: 5, window: 1s}",
            "config.redis.url",
        ),
        (
            "{redis: {url: 'redis://127.0.0.1:1'}, limit: 0, window: 1s}",
            "config.limit",
        ),
        (
            "{redis: {url: 'redis://127.0.0.1:1'}, limit: 5, window: 1s, local: {}}",
            "config.local.rate",
        ),
    ] {
        let yaml = config(
            &[listener(
                "edge",
                &format!("[{{typed: redis_quota, config: {rules}}}]"),
                "b",
            )],
            &[("b", up)],
        );
        let err = try_start(&yaml)
            .err()
            .unwrap_or_else(|| panic!("{rules} accepted"));
        assert!(err.contains(field), "{rules}: {err}");
    }
}
