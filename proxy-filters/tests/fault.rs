//! Fault injection through a real proxy: abort and delay shares within binomial
//! bounds over a fixed seed, per-request fault headers, aborts never reach the
//! upstream, bad sections refused naming the field.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{config, listener, start, try_start, upstream};
use proxy_test_support::{client::get, closed_port, with_timeout};

/// Whether `hits` out of `n` draws is within 4.5 standard deviations of `p`.
fn within_binomial(hits: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (hits as f64 - mean).abs() <= 4.5 * sd
}

#[tokio::test]
async fn abort_share_is_binomial_and_aborts_skip_the_upstream() {
    with_timeout(Duration::from_secs(60), async {
        let up = upstream("backend", Duration::ZERO);
        let filters =
            "[{typed: fault, config: {abort: {status: 503, abort_percent: 30}, seed: 42}}]";
        let proxy = start(&config(
            &[listener("main", filters, "backend")],
            &[("backend", up.addr)],
        ));
        let addr = proxy.addr("main");
        let n = 300;
        let mut aborted = 0;
        for _ in 0..n {
            let got = get(addr, "/x", &[]).await;
            match got.status.as_u16() {
                503 => {
                    assert_eq!(got.headers["x-proxy-error"], "fault_abort");
                    aborted += 1;
                }
                200 => assert_eq!(got.body, "backend"),
                s => panic!("unexpected status {s}"),
            }
        }
        assert!(within_binomial(aborted, n, 0.3), "{aborted} of {n} aborted");
        assert_eq!(
            up.hits() as usize,
            n - aborted,
            "aborted requests reached the upstream"
        );
    })
    .await;
}

#[tokio::test]
async fn delay_share_is_binomial() {
    with_timeout(Duration::from_secs(60), async {
        let up = upstream("backend", Duration::ZERO);
        let filters =
            "[{typed: fault, config: {delay: {duration: 100ms, delay_percent: 25}, seed: 7}}]";
        let proxy = start(&config(
            &[listener("main", filters, "backend")],
            &[("backend", up.addr)],
        ));
        let addr = proxy.addr("main");
        let n = 200;
        let mut delayed = 0;
        for _ in 0..n {
            let t = Instant::now();
            let got = get(addr, "/x", &[]).await;
            assert_eq!(got.status, 200);
            if t.elapsed() >= Duration::from_millis(100) {
                delayed += 1;
            }
        }
        assert!(
            within_binomial(delayed, n, 0.25),
            "{delayed} of {n} delayed"
        );
        assert_eq!(
            up.hits() as usize,
            n,
            "a delayed request must still be forwarded"
        );
    })
    .await;
}

#[tokio::test]
async fn fault_headers_switch_faults_on_per_request() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let filters = "[{typed: fault, config: {headers: {prefix: x-envoy-fault, max_delay: 1s}}}]";
        let proxy = start(&config(
            &[listener("main", filters, "backend")],
            &[("backend", up.addr)],
        ));
        let addr = proxy.addr("main");
        // No header: no fault.
        assert_eq!(get(addr, "/", &[]).await.status, 200);
        // An abort asked for.
        let got = get(addr, "/", &[("x-envoy-fault-abort-request", "418")]).await;
        assert_eq!(got.status, 418);
        // Percentage 0 switches it off again.
        let got = get(
            addr,
            "/",
            &[
                ("x-envoy-fault-abort-request", "418"),
                ("x-envoy-fault-abort-request-percentage", "0"),
            ],
        )
        .await;
        assert_eq!(got.status, 200);
        // A delay, capped by max_delay (asked 5s, gets 1s).
        let t = Instant::now();
        let got = get(addr, "/", &[("x-envoy-fault-delay-request", "5000")]).await;
        assert_eq!(got.status, 200);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(990), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        // Garbage values are ignored.
        let got = get(addr, "/", &[("x-envoy-fault-abort-request", "99999")]).await;
        assert_eq!(got.status, 200);
    })
    .await;
}

#[test]
fn bad_sections_are_refused_naming_the_field() {
    let up = closed_port();
    let cases = [
        (
            "{abort: {status: 503, abort_percent: 150}}",
            "config.abort.abort_percent: 150 is not a percentage",
        ),
        ("{abort: {status: 99}}", "config.abort.status: 99"),
        (
            "{delay: {duration: 1s, delay_percent: -1}}",
            "config.delay.delay_percent",
        ),
        ("{delay: {duration: soon}}", "config.delay.duration"),
        (
            "{abort: {status: 503, percentage: 5}}",
            "config.abort.percentage",
        ),
        ("{abort: {status: 503}, typo: 1}", "config.typo"),
        ("{headers: {prefix: 'bad prefix'}}", "config.headers.prefix"),
        ("{}", "config.delay: set at least one"),
    ];
    for (section, field) in cases {
        let filters = format!("[{{typed: fault, config: {section}}}]");
        let err = try_start(&config(&[listener("main", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{section} was accepted"));
        assert!(err.contains(field), "{section}: {err}");
    }
}

#[tokio::test]
async fn max_active_bounds_held_requests() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let filters = "[{typed: fault, config: {headers: {max_delay: 2s}, max_active: 1}}]";
        let proxy = start(&config(
            &[listener("main", filters, "backend")],
            &[("backend", up.addr)],
        ));
        let addr = proxy.addr("main");
        let slow = {
            tokio::spawn(async move { get(addr, "/", &[("x-fault-delay-request", "1500")]).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The one place is taken: this request is not held.
        let t = Instant::now();
        let got = get(addr, "/", &[("x-fault-delay-request", "1500")]).await;
        assert_eq!(got.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(slow.await.unwrap().status, 200);
        // Given back: held again.
        let t = Instant::now();
        get(addr, "/", &[("x-fault-delay-request", "300")]).await;
        assert!(
            t.elapsed() >= Duration::from_millis(290),
            "{:?}",
            t.elapsed()
        );
    })
    .await;
}
