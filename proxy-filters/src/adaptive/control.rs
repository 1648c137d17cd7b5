//! The control loop: every interval it reads the signals, learns the latency baseline
//! and interface costs, steps the PID controller and publishes the new limit to the
//! gate. It runs as a tokio task holding only a `Weak` of the shared state, so it ends
//! at the first tick after the layer and its services are dropped.
//!
//! This file holds the task and the loop's state; the baseline measurement at low
//! concurrency is in `probe.rs`, the control step in `step.rs`.

use std::{
    collections::VecDeque,
    sync::{
        atomic::Ordering::{Relaxed, SeqCst},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use super::{
    controller::Pid,
    cost::CostLearner,
    limiter::Shared,
    metrics::AtomicF64,
    probe::Probe,
    signals::{Counts, CpuSampler, LatencyWindow},
};

/// An interface without requests this long gives up its slot in the cost table.
const INTERFACE_IDLE: Duration = Duration::from_secs(60);

/// A value a previous control loop of the same limiter left (it survives reloads).
fn learned(v: &AtomicF64) -> Option<f64> {
    let v = v.get();
    (v.is_finite() && v > 0.0).then_some(v)
}

/// Starts the control loop on the current tokio runtime if it is not running (no-op
/// outside a runtime: the first request inside one starts it).
pub(crate) fn start(shared: &Arc<Shared>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if shared
        .loop_running
        .compare_exchange(false, true, SeqCst, SeqCst)
        .is_err()
    {
        return;
    }
    let weak = Arc::downgrade(shared);
    let control = ControlLoop::new(shared, Instant::now());
    handle.spawn(run(weak, control));
}

/// Clears the running flag when the task ends (layer dropped, runtime shut down), so a
/// later request on a live runtime starts a new loop.
struct Running(Weak<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            s.loop_running.store(false, SeqCst);
        }
    }
}

async fn run(weak: Weak<Shared>, mut control: ControlLoop) {
    let _running = Running(weak.clone());
    let period = control.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = weak.upgrade() else {
            tracing::debug!("adaptive concurrency: layer dropped, control loop ends");
            return;
        };
        control.tick(&shared, Instant::now());
    }
}

/// The control loop's own state (never touched by the request path).
#[derive(Debug)]
pub(crate) struct ControlLoop {
    interval: Duration,
    pub(super) last: Instant,
    pub(super) pid: Pid,
    pub(super) window: LatencyWindow,
    pub(super) cpu: Option<CpuSampler>,
    pub(super) cpu_smoothed: Option<f64>,
    pub(super) baseline: Option<f64>,
    pub(super) baseline_mean: Option<f64>,
    pub(super) recent_dt: VecDeque<f64>,
    pub(super) window_len: usize,
    pub(super) best_rate: f64,
    pub(super) costs: Option<CostLearner>,
    pub(super) rejected_before: u64,
    /// The open baseline measurement, if any (learned latency target only).
    pub(super) probe: Option<Probe>,
    /// When the next measurement opens (learned latency target only).
    pub(super) next_probe: Option<Instant>,
    /// Completions of the open measurement so far (since its latency stopped falling).
    pub(super) probe_counts: Counts,
    /// Completions of the open measurement in this step.
    pub(super) probe_step: Counts,
    /// The id of the latest measurement.
    pub(super) epoch: u32,
}

/// What one tick measured and decided (for tests and metrics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tick {
    pub(crate) pressure: Option<f64>,
    pub(crate) latency: Option<Duration>,
    pub(crate) target: Option<Duration>,
    pub(crate) limit: u32,
    pub(crate) healthy: bool,
}

impl ControlLoop {
    pub(crate) fn new(shared: &Shared, now: Instant) -> Self {
        let c = &shared.settings.config;
        let window = c.latency.as_ref().map_or(1, |l| {
            let n = l.window.as_secs_f64() / c.interval.as_secs_f64();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = n.ceil() as usize;
            n.max(1)
        });
        Self {
            interval: c.interval,
            last: now,
            pid: Pid::new(
                shared.settings.gains,
                c.min_limit.get(),
                c.max_limit.get(),
                shared.gate.limit(),
            ),
            window: LatencyWindow::new(window),
            cpu: c.cpu.as_ref().map(|_| CpuSampler::default()),
            cpu_smoothed: None,
            baseline: learned(&shared.stats.learned_baseline),
            baseline_mean: learned(&shared.stats.learned_mean),
            recent_dt: VecDeque::with_capacity(window + 1),
            window_len: window,
            best_rate: learned(&shared.stats.learned_best_rate).unwrap_or(0.0),
            costs: shared.costs.as_ref().zip(c.cost.as_ref()).map(|(t, k)| {
                let idle = INTERFACE_IDLE.as_secs_f64() / c.interval.as_secs_f64();
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let evict_after = idle.ceil() as u32;
                CostLearner::new(t, k.high_cost_factor, k.min_samples, evict_after)
            }),
            rejected_before: shared.rejections.load(Relaxed),
            probe: None,
            next_probe: None,
            probe_counts: Counts::default(),
            probe_step: Counts::default(),
            epoch: 0,
        }
        .with_probe_schedule(shared, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::{config::AdaptiveConfig, metrics::LimiterStats};

    fn shared(yaml: &str) -> Shared {
        let c: AdaptiveConfig = proxy_core::config::from_yaml(yaml).unwrap();
        Shared::new(c.validated().unwrap(), Arc::new(LimiterStats::default()))
    }

    /// A synthetic backend: 8 slots of 20 ms, latency growing with in-flight beyond
    /// them. One step admits `demand` requests (as many as the gate lets through),
    /// completes them as the request path would (a measurement's share included) and
    /// ticks the loop 100 ms later.
    struct Sim {
        now: Instant,
        control: ControlLoop,
    }

    fn latency_at(inflight: u32) -> Duration {
        Duration::from_micros(20_000 + 2_500 * u64::from(inflight.saturating_sub(8)))
    }

    impl Sim {
        fn new(s: &Shared) -> Self {
            let now = Instant::now();
            Self {
                now,
                control: ControlLoop::new(s, now),
            }
        }

        fn step(&mut self, s: &Shared, demand: u32) -> Tick {
            let epoch = s.probe_epoch.load(Relaxed);
            let mut admitted = 0;
            while admitted < demand && s.gate.try_acquire(false).is_ok() {
                admitted += 1;
            }
            if admitted < demand {
                s.rejections.fetch_add(1, Relaxed);
            }
            // As many completions per interval as 8 slots of 20 ms allow.
            for _ in 0..admitted.min(8) * 5 {
                s.latency.record(latency_at(admitted));
                if epoch != 0 {
                    s.probe_latency.record(latency_at(admitted));
                }
            }
            for _ in 0..admitted {
                s.gate.release();
            }
            self.now += Duration::from_millis(100);
            self.control.tick(s, self.now)
        }
    }

    /// Learns the baseline at low load, limits under overload, recovers.
    #[test]
    fn learns_baseline_then_limits_then_recovers() {
        let s = shared(
            "{cpu: null, interval: 100ms, min_limit: 1, max_limit: 500, headroom: {floor: 8}}",
        );
        let mut sim = Sim::new(&s);
        for _ in 0..40 {
            sim.step(&s, 4);
        }
        let baseline = sim.control.baseline.unwrap();
        assert!((0.019..0.023).contains(&baseline), "{baseline}");
        // Overload: demand fills whatever the limit is.
        let mut limits = Vec::new();
        for _ in 0..60 {
            limits.push(sim.step(&s, 1000).limit);
        }
        assert!(
            limits[30..].iter().all(|&l| (8..=16).contains(&l)),
            "{limits:?}"
        );
        // Load falls: the limit rises back to the demand cap.
        for _ in 0..30 {
            sim.step(&s, 2);
        }
        assert!(s.gate.limit() >= 8, "{}", s.gate.limit());
    }

    /// Started under overload: the first admissions are at the probe concurrency, the
    /// baseline is the unloaded latency, the floor follows it, and the limit settles
    /// near the 8 slots instead of running up with demand; healthy intervals with a
    /// higher latency never raise the baseline.
    #[test]
    fn cold_start_under_overload_measures_at_low_concurrency() {
        let s = shared("{cpu: null, interval: 100ms, min_limit: 1, max_limit: 1000}");
        assert_eq!(
            s.gate.limit(),
            3,
            "a new limiter starts at the probe concurrency"
        );
        let mut sim = Sim::new(&s);
        let mut limits = Vec::new();
        for _ in 0..80 {
            limits.push(sim.step(&s, 1000).limit);
        }
        let baseline = sim.control.baseline.unwrap();
        assert!((0.019..0.023).contains(&baseline), "{baseline} {limits:?}");
        assert!(limits.iter().all(|&l| l <= 16), "{limits:?}");
        assert!(
            limits[40..].iter().all(|&l| (7..=12).contains(&l)),
            "{limits:?}"
        );
        let floor = s.stats.floor.get();
        assert!(floor <= 9.0, "{floor}");
        // The next measurement is an interval away.
        let next = sim.control.next_probe.unwrap();
        assert!(
            next > sim.now + Duration::from_secs(20),
            "{:?}",
            next - sim.now
        );
        // Light load with a slower backend: healthy, yet the baseline stays.
        for _ in 0..50 {
            s.latency.record(Duration::from_millis(23));
            sim.now += Duration::from_millis(100);
            for _ in 0..30 {
                s.latency.record(Duration::from_millis(23));
            }
            sim.control.tick(&s, sim.now);
        }
        assert_eq!(sim.control.baseline, Some(baseline));
    }

    /// The CPU signal of this very process: a busy thread pushes CPU use over a low
    /// target and the limit falls; once it stops, the limit comes back.
    #[test]
    fn cpu_over_target_lowers_the_limit() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // One busy thread is 1/cores of the machine: aim at about a third of that.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let target = (0.3 / cores as f64).min(1.0);
        let s = shared(&format!(
            "{{latency: null, headroom: null, throughput_floor: null, min_limit: 1, max_limit: 64, \
              cpu: {{target_percent: {}, smoothing: 100ms}}}}",
            target * 100.0
        ));
        let mut control = ControlLoop::new(&s, Instant::now());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        };
        let mut lowest = u32::MAX;
        for _ in 0..15 {
            std::thread::sleep(Duration::from_millis(100));
            lowest = lowest.min(control.tick(&s, Instant::now()).limit);
        }
        stop.store(true, Relaxed);
        busy.join().unwrap();
        assert!(
            s.stats.cpu.get() > target,
            "cpu {} target {target}",
            s.stats.cpu.get()
        );
        assert!(lowest < 64, "{lowest}");
        let mut last = 0;
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(100));
            last = control.tick(&s, Instant::now()).limit;
            if last == 64 {
                break;
            }
        }
        assert_eq!(last, 64, "recovers once the CPU is idle");
    }

    /// A limiter rebuilt with the same stats (a reload) keeps the limit and what its
    /// predecessor learned.
    #[test]
    fn reload_keeps_what_was_learned() {
        let stats = Arc::new(LimiterStats::default());
        let c: AdaptiveConfig = proxy_core::config::from_yaml("{cpu: null}").unwrap();
        let first = Shared::new(c.validated().unwrap(), stats.clone());
        let t0 = Instant::now();
        let mut control = ControlLoop::new(&first, t0);
        for i in 1..=10 {
            for _ in 0..30 {
                first.latency.record(Duration::from_millis(20));
                first.probe_latency.record(Duration::from_millis(20));
            }
            control.tick(&first, t0 + Duration::from_millis(100 * i));
        }
        let baseline = control.baseline.unwrap();
        assert_eq!(first.probe_epoch.load(Relaxed), 0, "measured");
        first.gate.set_limits(40, 28);
        stats.limit.store(40, Relaxed);
        let second = Shared::new(c.validated().unwrap(), stats);
        assert_eq!(second.gate.limit(), 40);
        let control = ControlLoop::new(&second, t0);
        assert_eq!(control.baseline, Some(baseline));
        assert!(control.baseline_mean.is_some());
        assert!(control.best_rate > 0.0);
        assert!(
            control.probe.is_none(),
            "no cold measurement after a reload"
        );
        assert_eq!(second.probe_epoch.load(Relaxed), 0);
    }
}
