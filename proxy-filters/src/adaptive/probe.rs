//! The baseline measurement of a learned latency target: the limit shrinks to the
//! probe concurrency, the latency of what completes at that concurrency becomes the
//! baseline, then the limit is restored. A new limiter measures before it admits more
//! than the probe concurrency; afterwards one measurement runs every `probe.interval`.

use std::{
    sync::atomic::Ordering::{Relaxed, Release},
    time::{Duration, Instant},
};

use super::{
    control::ControlLoop,
    limiter::{high_cost_limit, Shared},
};

/// While a measurement's latency in one step is this factor below what it gathered
/// before, a backlog is draining: what it gathered before is dropped.
const PROBE_FALLING: f64 = 2.0;
/// A measurement with fewer than `latency.min_samples` completions by then ends with
/// what it has (or, with nothing and no baseline yet, starts over).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// An open baseline measurement.
#[derive(Debug)]
pub(super) struct Probe {
    started: Instant,
    /// The limit afterwards: the PID's own (`None`), or where a new limiter starts.
    restore: Option<u32>,
}

impl ControlLoop {
    pub(super) fn with_probe_schedule(mut self, shared: &Shared, now: Instant) -> Self {
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
    pub(super) fn open_probe(&mut self, shared: &Shared, now: Instant, restore: Option<u32>) {
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
    pub(super) fn advance_probe(&mut self, shared: &Shared, now: Instant) -> (bool, Option<u32>) {
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
}
