//! The control step: one tick of the control loop reads the latency and CPU signals,
//! learns the baseline from healthy intervals, works out the throughput floor, steps
//! the PID controller (or holds the limit while a baseline measurement runs) and
//! publishes the limit and the figures behind it.

use std::{
    sync::{atomic::Ordering::Relaxed, PoisonError},
    time::{Duration, Instant},
};

use super::{
    control::{ControlLoop, Tick},
    controller::{Input, MAX_PRESSURE},
    limiter::{high_cost_limit, Shared},
};

/// Weight of a healthy interval's percentile when the baseline moves down.
const BASELINE_DOWN: f64 = 0.5;
/// Weight of a healthy interval's percentile when a fixed-target limiter's baseline
/// mean moves up.
const BASELINE_UP: f64 = 0.05;
/// Weight of a healthy interval's mean latency in the baseline mean.
const BASELINE_MEAN_ALPHA: f64 = 0.1;
/// Intervals over which the completion rate behind the throughput floor is measured
/// (capped by the latency window).
const RATE_INTERVALS: usize = 2;

/// Moves a measured baseline towards a lower value seen in a healthy interval; a
/// higher one is not evidence of the unloaded latency (it may be queueing), so only a
/// measurement at low concurrency raises it.
fn learn_down(baseline: Option<f64>, v: f64, weight: f64) -> Option<f64> {
    baseline.map(|b| if v < b { b + weight * (v - b) } else { b })
}

impl ControlLoop {
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
