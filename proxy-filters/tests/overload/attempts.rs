//! One attempt of a loaded phase of the overload test: the limiter's configuration,
//! the number of attempts, and the runs that measure one attempt (hard invariants
//! asserted, the goodput and latency bounds returned as an error).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use proxy_filters::adaptive::{AdaptiveConcurrencyLayer, AdaptiveConfig};
use tower::Layer;

use super::load::{ms, offer, quantile, Baseline, Sample, Upstream};

pub(crate) async fn cold_run(up: &Upstream, base: &Baseline, attempt: usize) -> Result<(), String> {
    let offered = 3.0 * base.capacity;
    let settle = Duration::from_secs(5);
    let window = Duration::from_secs(3);
    // The backend is overloaded before the limiter exists.
    let unlimited = tokio::spawn(offer(
        up.clone(),
        offered,
        Duration::from_millis(500),
        Duration::from_secs(20),
        |_| "/",
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let layer = AdaptiveConcurrencyLayer::new(&limiter_config(&format!("cold{attempt}"))).unwrap();
    let limited = layer.layer(up.clone());
    let trace = Arc::new(Mutex::new(Vec::new()));
    let watch = {
        let (layer, trace) = (layer.clone(), trace.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < settle + window {
                let s = layer.stats();
                trace.lock().unwrap().push((
                    layer.limit(),
                    s.throughput_floor().map(|f| f as u32),
                    s.latency_target().map(|t| (t * 1e3) as u32),
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let (samples, pending) = offer(
        limited,
        offered,
        settle + window,
        Duration::from_secs(10),
        |_| "/",
    )
    .await;
    watch.await.unwrap();
    let (_, unlimited_pending) = unlimited.await.unwrap();
    assert_eq!((pending, unlimited_pending), (0, 0));
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.status == 200).collect();
    let rejected = samples
        .iter()
        .filter(|s| s.overload && s.status == 503)
        .count();
    assert_eq!(
        ok.len() + rejected,
        samples.len(),
        "only 200 or 503 overload"
    );
    let in_window = |d: Duration| d >= settle && d < settle + window;
    let goodput =
        ok.iter().filter(|s| in_window(s.completed_at())).count() as f64 / window.as_secs_f64();
    let admitted: Vec<Duration> = ok
        .iter()
        .filter(|s| in_window(s.offset))
        .map(|s| s.latency)
        .collect();
    let p50 = quantile(admitted.clone(), 0.5);
    let p99 = quantile(admitted, 0.99);
    let stats = layer.stats();
    println!(
        "cold start, {offered:.0} req/s offered: from {}s to {}s goodput {goodput:.0} req/s ({:.0}% of capacity),          admitted p50 {:.1} ms p99 {:.1} ms ({:.2}x unloaded p99); baseline {:.1} ms, target {:.1} ms;          (limit, floor, target ms) every 250 ms {:?}",
        settle.as_secs(),
        (settle + window).as_secs(),
        100.0 * goodput / base.capacity,
        ms(p50),
        ms(p99),
        p99.as_secs_f64() / base.unloaded_p99.as_secs_f64(),
        stats.baseline().unwrap_or(f64::NAN) * 1e3,
        stats.latency_target().unwrap_or(f64::NAN) * 1e3,
        trace.lock().unwrap(),
    );
    // A baseline learned from the backlog would be several hundred milliseconds.
    let baseline = stats.baseline().ok_or("no baseline measured")?;
    assert!(
        baseline < 3.0 * base.unloaded_p99.as_secs_f64(),
        "baseline {:.1} ms learned under overload",
        baseline * 1e3
    );
    if goodput < 0.9 * base.capacity {
        return Err(format!(
            "goodput {goodput:.0} < 90% of {:.0}",
            base.capacity
        ));
    }
    if p99 > base.unloaded_p99 * 2 {
        return Err(format!(
            "admitted p99 {:.1} ms > 2x unloaded p99 {:.1} ms",
            ms(p99),
            ms(base.unloaded_p99)
        ));
    }
    Ok(())
}

pub(crate) fn limiter_config(name: &str) -> AdaptiveConfig {
    // Defaults everywhere (no limit set by hand) except: no CPU signal in a test.
    proxy_core::config::from_yaml(&format!("{{name: {name}, cpu: null}}")).unwrap()
}

/// Attempts of a loaded phase. Another process taking the two cores for a second
/// spoils a latency measurement whatever the limiter does; each attempt measures the
/// backend again, prints its figures, and one attempt within the bounds passes.
pub(crate) const ATTEMPTS: usize = 3;

/// One loaded phase with the limiter: learn at half capacity, then 3x for 3 s. Hard
/// invariants are asserted; the goodput and latency bounds are returned as an error.
pub(crate) async fn limited_run(up: &Upstream, base: &Baseline) -> Result<(), String> {
    let offered = 3.0 * base.capacity;
    let overload = Duration::from_secs(3);
    let layer = AdaptiveConcurrencyLayer::new(&limiter_config("overload")).unwrap();
    let limited = layer.layer(up.clone());
    offer(
        limited.clone(),
        base.capacity / 2.0,
        Duration::from_millis(1500),
        Duration::from_secs(5),
        |_| "/",
    )
    .await;
    let rejected_before = layer.stats().rejected_limit() + layer.stats().rejected_high_cost();
    let limits = Arc::new(Mutex::new(Vec::new()));
    let watch = {
        let (layer, limits) = (layer.clone(), limits.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < overload {
                let s = layer.stats();
                limits.lock().unwrap().push((
                    layer.limit(),
                    s.throughput_floor().map(|f| f as u32),
                    s.latency_target().map(|t| (t * 1e3) as u32),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (samples, pending) =
        offer(limited, offered, overload, Duration::from_secs(10), |_| "/").await;
    watch.await.unwrap();
    assert_eq!(pending, 0);
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.status == 200).collect();
    let rejected = samples
        .iter()
        .filter(|s| s.overload && s.status == 503)
        .count();
    assert_eq!(
        ok.len() + rejected,
        samples.len(),
        "only 200 or 503 overload"
    );
    let stats = layer.stats();
    assert_eq!(
        stats.rejected_limit() + stats.rejected_high_cost() - rejected_before,
        rejected as u64,
        "every 503 overload answer counted"
    );
    let goodput =
        ok.iter().filter(|s| s.completed_at() <= overload).count() as f64 / overload.as_secs_f64();
    let admitted: Vec<Duration> = ok.iter().map(|s| s.latency).collect();
    let p50 = quantile(admitted.clone(), 0.5);
    let p99 = quantile(admitted, 0.99);
    let settled: Vec<Duration> = ok
        .iter()
        .filter(|s| s.offset >= Duration::from_secs(1))
        .map(|s| s.latency)
        .collect();
    let p99_settled = quantile(settled, 0.99);
    let limits = limits.lock().unwrap().clone();
    println!(
        "with limiter, {offered:.0} req/s offered for {}s: goodput {goodput:.0} req/s ({:.0}% of capacity), \
         admitted {} rejected {rejected}; admitted p50 {:.1} ms p99 {:.1} ms ({:.2}x unloaded p99), \
         p99 after the first second {:.1} ms ({:.2}x); (limit, floor, target ms) every 50 ms {limits:?}",
        overload.as_secs(),
        100.0 * goodput / base.capacity,
        ok.len(),
        ms(p50),
        ms(p99),
        p99.as_secs_f64() / base.unloaded_p99.as_secs_f64(),
        ms(p99_settled),
        p99_settled.as_secs_f64() / base.unloaded_p99.as_secs_f64(),
    );
    if goodput < 0.9 * base.capacity {
        return Err(format!(
            "goodput {goodput:.0} < 90% of {:.0}",
            base.capacity
        ));
    }
    // Steady state: requests started once the controller had a second to react.
    if p99_settled > base.unloaded_p99 * 2 {
        return Err(format!(
            "admitted p99 after the first second {:.1} ms > 2x unloaded p99 {:.1} ms",
            ms(p99_settled),
            ms(base.unloaded_p99)
        ));
    }
    // The whole period, onset included (the first admitted requests queue behind the
    // backend until the first latencies come back).
    if p99 > base.unloaded_p99 * 3 {
        return Err(format!(
            "admitted p99 {:.1} ms > 3x unloaded p99 {:.1} ms",
            ms(p99),
            ms(base.unloaded_p99)
        ));
    }
    // The limit recovers once the load falls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = offer(
        layer.layer(up.clone()),
        base.capacity / 4.0,
        Duration::from_secs(1),
        Duration::from_secs(5),
        |_| "/",
    )
    .await;
    let after_rejected = after.iter().filter(|s| s.status != 200).count();
    println!(
        "after the overload, {:.0} req/s: {after_rejected} of {} rejected, limit {}",
        base.capacity / 4.0,
        after.len(),
        layer.limit()
    );
    assert!(
        after_rejected * 20 <= after.len(),
        "{after_rejected} of {} rejected after load fell",
        after.len()
    );
    Ok(())
}
