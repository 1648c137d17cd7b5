//! Latency ejection on real sockets: a backend that answers, but slowly, among fast
//! ones is ejected by outlier detection's `latency` rule, stays out while its
//! readmission probe is slow, and is readmitted once it is fast again.

#![allow(clippy::unwrap_used)]

use crate::common_resilience;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use common_resilience::{flags, get, listener, prometheus, start, Upstream, LIMIT};
use proxy_test_support::{eventually_async, free_addr, upstream::response};

/// An upstream answering every request (its health path too) after `delay_ms`.
struct Slow {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
    _server: proxy_test_support::Upstream,
}

impl Slow {
    fn start(delay_ms: u64) -> Self {
        let delay = Arc::new(AtomicU64::new(delay_ms));
        let hits = Arc::new(AtomicU64::new(0));
        let server = {
            let (delay, hits) = (delay.clone(), hits.clone());
            proxy_test_support::Upstream::http_async(move |seen| {
                if seen.path() != "/healthz" {
                    hits.fetch_add(1, Ordering::SeqCst);
                }
                let d = Duration::from_millis(delay.load(Ordering::SeqCst));
                async move {
                    tokio::time::sleep(d).await;
                    let mut resp = response(200, "slow\n");
                    resp.headers_mut()
                        .insert("x-upstream", "slow".parse().unwrap());
                    resp
                }
            })
        };
        Self {
            addr: server.addr,
            delay_ms: delay,
            hits,
            _server: server,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Keeps 9 requests in flight until dropped; counts non-200 answers.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        for _ in 0..9 {
            let (stop, errors) = (stop.clone(), errors.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if get(addr, "/", &[]).await.status != 200 {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        Self { stop, errors }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_is_ejected_and_readmitted_when_fast_again() {
    let slow = Slow::start(300);
    let (f1, f2) = (Upstream::start("f1"), Upstream::start("f2"));
    let admin = free_addr();
    let outlier = "{interval: 500ms, latency: {percentile: 90, factor: 3, threshold: 100ms, minimum_hosts: 3, request_volume: 2}, base_ejection_time: 300ms, max_ejection_time: 1s, max_ejection_percent: 50, panic_threshold_percent: 30, readmission: {probe: {http: {path: /healthz}}, timeout: 2s}}";
    let yaml = format!(
        "admin: {{address: \"{admin}\"}}\nlisteners:\n{}clusters:\n  - name: app\n    extensions: [{{typed: outlier_detection, config: {outlier}}}]\n    endpoints: [\"{}\", \"{}\", \"{}\"]\n",
        listener("main", "[]", "app"),
        slow.addr,
        f1.addr,
        f2.addr
    );
    let proxy = start(&yaml);
    let addr = proxy.addr("main");
    tokio::time::timeout(LIMIT, async {
        let load = Load::start(addr);
        // Slow, not failing: ejected for its latency.
        assert!(
            eventually_async(Duration::from_secs(10), || async {
                flags(admin, "app", slow.addr).await == ["ejected"]
            })
            .await,
            "the slow endpoint is ejected"
        );
        assert!(slow.hits() >= 2, "it was served before: {}", slow.hits());
        // Past its ejection time, its probe answers in 300 ms, above the cutoff: out.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let out = slow.hits();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(slow.hits(), out, "no traffic while it is slow");
        assert_eq!(flags(admin, "app", slow.addr).await, ["ejected"]);
        let text = prometheus(admin).await;
        assert!(
            text.contains("proxy_lb_outlier_ejections_total{cluster=\"app\",reason=\"latency\"} 1"),
            "{text}"
        );
        // Fast again: the probe passes, it is readmitted and stays in.
        slow.delay_ms.store(0, Ordering::SeqCst);
        assert!(
            eventually_async(Duration::from_secs(10), || async {
                flags(admin, "app", slow.addr).await.is_empty() && slow.hits() > out
            })
            .await,
            "readmitted once fast"
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(flags(admin, "app", slow.addr).await.is_empty());
        let text = prometheus(admin).await;
        assert!(
            text.contains("proxy_lb_outlier_readmissions_total{cluster=\"app\"} 1"),
            "{text}"
        );
        assert_eq!(load.errors.load(Ordering::SeqCst), 0, "slow, never failing");
    })
    .await
    .unwrap();
}
