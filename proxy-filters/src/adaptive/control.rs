//! The control loop: every interval it reads the signals, learns the latency baseline
//! and interface costs, steps the PID controller and publishes the new limit to the
//! gate. It runs as a tokio task holding only a `Weak` of the shared state, so it ends
//! at the first tick after the layer and its services are dropped.

use std::{
    collections::VecDeque,
    sync::{
        atomic::Ordering::{Relaxed, Release, SeqCst},
        Arc, PoisonError, Weak,
    },
    time::{Duration, Instant},
};

use super::{
    controller::{Input, Pid, MAX_PRESSURE},
    cost::CostLearner,
    limiter::{high_cost_limit, Shared},
    metrics::AtomicF64,
    signals::{Counts, CpuSampler, LatencyWindow},
};

/// Weight of a healthy interval's percentile when the baseline moves down.
const BASELINE_DOWN: f64 = 0.5;
/// Weight of a healthy interval's percentile when a fixed-target limiter's baseline
/// mean moves up.
const BASELINE_UP: f64 = 0.05;
/// While a measurement's latency in one step is this factor below what it gathered
/// before, a backlog is draining: what it gathered before is dropped.
const PROBE_FALLING: f64 = 2.0;
/// A measurement with fewer than `latency.min_samples` completions by then ends with
/// what it has (or, with nothing and no baseline yet, starts over).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// An interface without requests this long gives up its slot in the cost table.
const INTERFACE_IDLE: Duration = Duration::from_secs(60);
/// Weight of a healthy interval's mean latency in the baseline mean.
const BASELINE_MEAN_ALPHA: f64 = 0.1;
/// Intervals over which the completion rate behind the throughput floor is measured
/// (capped by the latency window).
const RATE_INTERVALS: usize = 2;

/// A value a previous control loop of the same limiter left (it survives reloads).
fn learned(v: &AtomicF64) -> Option<f64> {
    let v = v.get();
    (v.is_finite() && v > 0.0).then_some(v)
}

/// Moves a measured baseline towards a lower value seen in a healthy interval; a
/// higher one is not evidence of the unloaded latency (it may be queueing), so only a
/// measurement at low concurrency raises it.
fn learn_down(baseline: Option<f64>, v: f64, weight: f64) -> Option<f64> {
    baseline.map(|b| if v < b { b + weight * (v - b) } else { b })
}

/// An open baseline measurement.
#[derive(Debug)]
struct Probe {
    started: Instant,
    /// The limit afterwards: the PID's own (`None`), or where a new limiter starts.
    restore: Option<u32>,
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
    last: Instant,
    pid: Pid,
    window: LatencyWindow,
    cpu: Option<CpuSampler>,
    cpu_smoothed: Option<f64>,
    baseline: Option<f64>,
    baseline_mean: Option<f64>,
    recent_dt: VecDeque<f64>,
    window_len: usize,
    best_rate: f64,
    costs: Option<CostLearner>,
    rejected_before: u64,
    /// The open baseline measurement, if any (learned latency target only).
    probe: Option<Probe>,
    /// When the next measurement opens (learned latency target only).
    next_probe: Option<Instant>,
    /// Completions of the open measurement so far (since its latency stopped falling).
    probe_counts: Counts,
    /// Completions of the open measurement in this step.
    probe_step: Counts,
    /// The id of the latest measurement.
    epoch: u32,
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

    fn with_probe_schedule(mut self, shared: &Shared, now: Instant) -> Self {
        let c = &shared.settings.config;
        let Some(l) = c.latency.as_ref().filter(|l| l.target.is_none()) else {
            return self;
        };
        let open = shared.probe_epoch.load(Relaxed);
        if open != 0 {
            // A new limiter measures before it admits more than the probe concurrency.
            self.epoch = open;
            self.probe = Some(Probe {
                started: now,
                restore: Some(shared.start_limit),
            });
        } else if self.baseline.is_some() {
            // Inherited from a predecessor (reload): measured by it.
            self.next_probe = Some(now + l.probe.interval);
        } else {
            self.next_probe = Some(now);
        }
        self
    }

    /// Shrinks the limit to the probe concurrency and opens a measurement.
    fn open_probe(&mut self, shared: &Shared, now: Instant, restore: Option<u32>) {
        let c = &shared.settings.config;
        let Some(l) = &c.latency else { return };
        let concurrency = l
            .probe
            .concurrency
            .get()
            .clamp(c.min_limit.get(), c.max_limit.get());
        let fraction = c
            .cost
            .as_ref()
            .map_or(1.0, |k| k.high_cost_limit_percent.fraction());
        // Whatever completed since the previous measurement closed is not part of it.
        shared.probe_latency.drain(&mut self.probe_counts);
        self.probe_counts.clear();
        self.epoch = self.epoch.wrapping_add(1).max(1);
        shared
            .gate
            .set_limits(concurrency, high_cost_limit(concurrency, fraction));
        // Published after the limit: a request that sees this id saw the small limit.
        shared.probe_epoch.store(self.epoch, Release);
        self.probe = Some(Probe {
            started: now,
            restore,
        });
        self.next_probe = None;
        tracing::debug!(concurrency, "adaptive concurrency: measuring the baseline");
    }

    /// Advances the open measurement; returns whether it is still open and, if it
    /// closed in this step, the limit to restore.
    fn advance_probe(&mut self, shared: &Shared, now: Instant) -> (bool, Option<u32>) {
        let c = &shared.settings.config;
        let (Some(l), Some(probe)) = (&c.latency, &mut self.probe) else {
            return (false, None);
        };
        self.probe_step.clear();
        shared.probe_latency.drain(&mut self.probe_step);
        // A backlog built before the measurement (by this limiter before it shrank, or
        // by other clients) drains while it runs: while this step's latency is well
        // below what was gathered so far, the earlier completions queued and are dropped.
        let falling = match (self.probe_counts.mean(), self.probe_step.mean()) {
            (Some(so_far), Some(step)) => so_far > step.mul_f64(PROBE_FALLING),
            _ => false,
        };
        if falling {
            self.probe_counts.clear();
        }
        self.probe_counts.add(&self.probe_step);
        let n = self.probe_counts.total();
        let timed_out = now.saturating_duration_since(probe.started) >= PROBE_TIMEOUT;
        if n < l.min_samples.get() && !timed_out {
            return (true, None);
        }
        if n == 0 && self.baseline.is_none() {
            // Nothing to learn from yet, and nothing learned: keep measuring.
            probe.started = now;
            return (true, None);
        }
        let restore = probe.restore.unwrap_or_else(|| self.pid.limit());
        self.probe = None;
        shared.probe_epoch.store(0, Release);
        if let (Some(q), Some(mean)) = (
            self.probe_counts.quantile(l.percentile.fraction()),
            self.probe_counts.mean(),
        ) {
            self.baseline = Some(q.as_secs_f64());
            self.baseline_mean = Some(mean.as_secs_f64());
            tracing::debug!(baseline = ?q, samples = n, "adaptive concurrency: baseline measured");
        }
        self.next_probe = Some(now + l.probe.interval);
        (false, Some(restore))
    }

    /// One control step at `now`.
    pub(crate) fn tick(&mut self, shared: &Shared, now: Instant) -> Tick {
        let c = &shared.settings.config;
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let stats = &shared.stats;
        let in_flight = shared.gate.in_flight();
        let peak = shared.gate.take_peak().max(in_flight);
        let limit_now = shared.gate.limit();
        let rejected = shared.rejections.load(Relaxed);
        let rejected_now = rejected.saturating_sub(self.rejected_before);
        self.rejected_before = rejected;

        // The baseline measurement: open one when due, advance the open one.
        let learned_target = c.latency.as_ref().is_some_and(|l| l.target.is_none());
        if learned_target && self.probe.is_none() && self.next_probe.is_some_and(|t| now >= t) {
            self.open_probe(shared, now, None);
        }
        let (probing, restore) = self.advance_probe(shared, now);

        // Latency: the configured percentile over the newest intervals.
        let completed = self.window.push_from(&shared.latency);
        self.recent_dt.push_front(dt);
        self.recent_dt.truncate(self.window_len);
        let mut latency = None;
        let mut target = None;
        let mut latency_pressure = None;
        if let Some(l) = &c.latency {
            latency = self
                .window
                .quantile(l.percentile.fraction(), l.min_samples.get());
            target = l.target.or_else(|| {
                self.baseline
                    .map(|b| Duration::from_secs_f64(b * l.tolerance).max(l.min_target))
            });
            latency_pressure = match (latency, target) {
                (Some(v), Some(t)) => Some(v.as_secs_f64() / t.as_secs_f64()),
                _ => None,
            };
            // Saturated and nothing completing: the upstream is stuck, which no
            // percentile of completed requests would show.
            if completed == 0 && in_flight > 0 && in_flight >= limit_now {
                latency_pressure = Some(MAX_PRESSURE);
            }
        }

        // CPU, smoothed.
        let mut cpu_pressure = None;
        if let (Some(sampler), Some(cfg)) = (&mut self.cpu, &c.cpu) {
            if let Some(sample) = sampler.sample() {
                let tau = cfg.smoothing.as_secs_f64();
                let alpha = if tau > 0.0 { dt / (tau + dt) } else { 1.0 };
                let s = self
                    .cpu_smoothed
                    .map_or(sample, |prev| prev + alpha * (sample - prev));
                self.cpu_smoothed = Some(s);
                cpu_pressure = Some(s / cfg.target_percent.fraction());
            }
        }

        let pressure = match (latency_pressure, cpu_pressure) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let healthy = rejected_now == 0 && pressure.is_none_or(|p| p <= 1.0);

        // A learned target's baseline is measured at low concurrency (above); a healthy
        // interval may only lower it. A fixed target's mean (for the throughput floor)
        // is learned from healthy intervals, which are healthy by that fixed measure.
        if let (Some(_), true, false) = (&c.latency, healthy, probing) {
            let mean = self.window.newest_mean().map(|m| m.as_secs_f64());
            if learned_target {
                if let Some(v) = latency {
                    self.baseline = learn_down(self.baseline, v.as_secs_f64(), BASELINE_DOWN);
                }
                if let Some(mean) = mean {
                    self.baseline_mean = learn_down(self.baseline_mean, mean, BASELINE_MEAN_ALPHA);
                }
            } else if let Some(mean) = mean {
                self.baseline_mean = Some(self.baseline_mean.map_or(mean, |b| {
                    let w = if mean < b {
                        BASELINE_MEAN_ALPHA
                    } else {
                        BASELINE_UP
                    };
                    b + w * (mean - b)
                }));
            }
        }

        let demand_cap = c
            .headroom
            .as_ref()
            .map(|h| (h.factor * f64::from(peak)).max(f64::from(h.floor.get())));
        let mut demand_floor = None;
        if let (Some(f), true, false) = (&c.throughput_floor, dt > 0.0, probing) {
            // Completions per second over the last few intervals (a burst of
            // completions is not throughput), then the best of that, decaying over
            // `memory`.
            let n = RATE_INTERVALS.min(self.recent_dt.len());
            let span: f64 = self.recent_dt.iter().take(n).sum();
            #[allow(clippy::cast_precision_loss)]
            let rate = self.window.recent_count(n) as f64 / span.max(1e-3);
            let decay = (-dt / f.memory.as_secs_f64()).exp();
            self.best_rate = rate.max(self.best_rate * decay);
            let latency_dominates = match (latency_pressure, cpu_pressure) {
                (Some(l), Some(c)) => l >= c,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if latency_dominates {
                demand_floor = self.baseline_mean.map(|m| (self.best_rate * m).ceil());
            }
        }
        let fraction = c
            .cost
            .as_ref()
            .map_or(1.0, |k| k.high_cost_limit_percent.fraction());
        let step = if probing {
            // The measurement holds the limit at the probe concurrency.
            let mut step = self.pid.last();
            step.limit = shared.gate.limit();
            step
        } else if let Some(limit) = restore {
            // Back to the limit before the measurement (a new limiter: its starting
            // limit, probed down from there with the measured target).
            if limit != self.pid.limit() {
                self.pid.reset(limit);
            }
            self.pid.last()
        } else {
            self.pid.step(Input {
                pressure,
                dt,
                demand_cap,
                demand_floor,
            })
        };
        let hc_limit = high_cost_limit(step.limit, fraction);
        shared.gate.set_limits(step.limit, hc_limit);

        if let (Some(learner), Some(table)) = (&mut self.costs, &shared.costs) {
            // A measurement's completions are at low concurrency: unloaded costs.
            learner.update(table, healthy || probing);
            let ifaces = learner.interfaces(table);
            *stats
                .interfaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = ifaces;
        }

        stats.limit.store(u64::from(step.limit), Relaxed);
        stats.high_cost_limit.store(u64::from(hc_limit), Relaxed);
        stats.in_flight.store(u64::from(in_flight), Relaxed);
        stats.steps.fetch_add(1, Relaxed);
        stats.pressure.set(pressure.unwrap_or(f64::NAN));
        stats.cpu.set(self.cpu_smoothed.unwrap_or(f64::NAN));
        stats.floor.set(demand_floor.unwrap_or(f64::NAN));
        stats
            .latency
            .set(latency.map_or(f64::NAN, |d| d.as_secs_f64()));
        stats
            .latency_target
            .set(target.map_or(f64::NAN, |d| d.as_secs_f64()));
        stats
            .learned_baseline
            .set(self.baseline.unwrap_or(f64::NAN));
        stats
            .learned_mean
            .set(self.baseline_mean.unwrap_or(f64::NAN));
        stats.learned_best_rate.set(self.best_rate);
        stats.error.set(step.error);
        stats.p.set(step.p);
        stats.i.set(step.i);
        stats.d.set(step.d);
        if step.limit != limit_now {
            tracing::debug!(
                limit = step.limit,
                previous = limit_now,
                ?pressure,
                in_flight,
                "adaptive concurrency: limit moved"
            );
        }
        Tick {
            pressure,
            latency,
            target,
            limit: step.limit,
            healthy,
        }
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
