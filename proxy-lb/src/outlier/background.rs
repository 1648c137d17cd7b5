//! The background side of outlier detection: the interval evaluation (success rate,
//! failure percentage, multiplier decay), readmission probes and healing reports,
//! run by one task per detection until it is dropped.

use std::{
    sync::{
        atomic::{Ordering::Relaxed, Ordering::SeqCst},
        Arc, Weak,
    },
    time::Duration,
};

use proxy_core::cluster::HealthFlags;
use tokio::sync::Notify;

use super::{
    detector::{Shared, State, REPORT_ATTEMPTS},
    math::{failure_percentage_outliers, latency_outliers, success_rate_outliers, EjectionReason},
};
use crate::{
    healing::{EjectionReport, HealingAction},
    health::{probe_endpoint, ProbeError},
};

impl Shared {
    /// One interval: success rate and failure percentage, readmission probes, decay.
    fn tick(self: &Arc<Self>) {
        let st = self.state.load_full();
        let stats: Vec<_> = st
            .per
            .iter()
            .enumerate()
            .map(|(i, c)| c.take_interval(i))
            .filter(|s| {
                let c = &st.per[s.index];
                !c.ejected.load(Relaxed) && !c.removed.load(Relaxed)
            })
            .collect();
        if let Some(sr) = &self.cfg.success_rate {
            for i in success_rate_outliers(&stats, sr) {
                self.try_eject(&st, i, EjectionReason::SuccessRate);
            }
        }
        if let Some(fp) = &self.cfg.failure_percentage {
            for i in failure_percentage_outliers(&stats, fp) {
                self.try_eject(&st, i, EjectionReason::FailurePercentage);
            }
        }
        if let Some(lc) = &self.cfg.latency {
            let latencies: Vec<_> = stats
                .iter()
                .filter_map(|s| st.per[s.index].take_latency(s.index, lc.percentile))
                .collect();
            // Ejected and removed endpoints' latencies of the interval are dropped too.
            for c in &st.per {
                if let Some(h) = &c.latency {
                    h.take(lc.percentile);
                }
            }
            let (slow, cutoff) = latency_outliers(&latencies, lc);
            for i in slow {
                let c = &st.per[i];
                if c.ejected.load(Relaxed) {
                    continue;
                }
                let cutoff_us =
                    cutoff.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                c.latency_cutoff_us.store(cutoff_us, Relaxed);
                self.try_eject(&st, i, EjectionReason::Latency);
            }
        }
        self.sync_flags(&st);
        let now = self.now_ms();
        let base = u64::try_from(self.cfg.base_ejection_time.as_millis()).unwrap_or(u64::MAX);
        for (i, c) in st.per.iter().enumerate() {
            if c.removed.load(Relaxed) {
                continue;
            }
            if c.ejected.load(Relaxed) {
                let due = self.ejection_time(c.times_ejected.load(Relaxed));
                let since = now.saturating_sub(c.ejected_at_ms.load(Relaxed));
                if u128::from(since) >= due.as_millis() && !c.probing.swap(true, SeqCst) {
                    tokio::spawn(readmit(self.clone(), st.clone(), i));
                }
            } else if c.times_ejected.load(Relaxed) > 0
                && now.saturating_sub(c.last_change_ms.load(Relaxed)) >= base
            {
                // Healthy for a base ejection time: the multiplier decays by one.
                c.times_ejected.fetch_sub(1, Relaxed);
                c.last_change_ms.store(now, Relaxed);
            }
        }
    }

    /// Sends every pending ejection to the healing sink.
    fn report_pending(self: &Arc<Self>) {
        let Some(sink) = &self.sink else {
            return;
        };
        let st = self.state.load_full();
        for (i, (e, c)) in st.endpoints.iter().zip(&st.per).enumerate() {
            if !c.pending_report.swap(false, SeqCst) {
                continue;
            }
            let report = EjectionReport {
                cluster: self.cluster.to_string(),
                endpoint: e.address,
                reason: c.last_reason().map_or("unknown", EjectionReason::as_str),
                times_ejected: c.times_ejected.load(Relaxed),
            };
            let fut = sink.report(report);
            let (shared, st) = (self.clone(), st.clone());
            tokio::spawn(async move {
                match fut.await {
                    Ok(HealingAction::Keep) => shared.counters.reported(true),
                    Ok(HealingAction::Remove) => {
                        shared.counters.reported(true);
                        shared.remove(&st, i);
                    }
                    Err(err) => {
                        shared.counters.reported(false);
                        let failures = st.per.get(i).map_or(u32::MAX, |c| {
                            c.report_failures.fetch_add(1, Relaxed).saturating_add(1)
                        });
                        // Tried again at the next interval, a few times.
                        let retry = failures < REPORT_ATTEMPTS;
                        if let (true, Some(c)) = (retry, st.per.get(i)) {
                            c.pending_report.store(true, SeqCst);
                        }
                        tracing::warn!(cluster = %shared.cluster, error = %proxy_core::DisplayChain(&err), failures, retry, "healing report failed");
                    }
                }
            });
        }
    }

    /// Removes endpoint `i` for good, as the healing sink asked. An ejected endpoint
    /// stays out, now removed; one readmitted since the report goes out only within
    /// the max-ejection and panic limits, like an ejection.
    fn remove(&self, st: &State, i: usize) {
        let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
            return;
        };
        if c.removed.load(SeqCst) || self.closed.load(SeqCst) {
            return;
        }
        if !c.ejected.load(SeqCst) && !self.may_take_out(st, self.ejected.load(SeqCst)) {
            self.counters.refused();
            tracing::warn!(cluster = %self.cluster, endpoint = %e.address, "removal refused: too many endpoints out");
            return;
        }
        // Counted as removed before it stops counting as ejected: never less out
        // than there is.
        self.removed.fetch_add(1, SeqCst);
        if c.removed.swap(true, SeqCst) {
            self.removed.fetch_sub(1, SeqCst);
            return;
        }
        self.set_flag(e, HealthFlags::REMOVED);
        if c.ejected.swap(false, SeqCst) {
            e.clear_health_flag(HealthFlags::EJECTED);
            self.ejected.fetch_sub(1, SeqCst);
            self.counters.left_ejection();
        }
        self.counters.removed();
        tracing::warn!(cluster = %self.cluster, endpoint = %e.address, "endpoint removed at the healing sink's request");
    }
}

/// Probes ejected endpoint `i`; readmits it when the probe passes.
async fn readmit(shared: Arc<Shared>, st: Arc<State>, i: usize) {
    let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
        return;
    };
    let probe = &shared.cfg.readmission;
    let started = std::time::Instant::now();
    let mut result = probe_endpoint(e, &probe.probe, probe.timeout).await;
    // Ejected for latency: the probe must also answer within the cutoff.
    let cutoff = Duration::from_micros(c.latency_cutoff_us.load(Relaxed));
    let took = started.elapsed();
    if result.is_ok() && c.last_reason() == Some(EjectionReason::Latency) && took > cutoff {
        result = Err(ProbeError::Slow { took, cutoff });
    }
    match result {
        Ok(()) if !c.removed.load(Relaxed) => {
            if c.ejected.swap(false, SeqCst) {
                c.reset_consecutive();
                c.last_change_ms.store(shared.now_ms(), Relaxed);
                e.clear_health_flag(HealthFlags::EJECTED);
                shared.ejected.fetch_sub(1, SeqCst);
                shared.counters.readmitted();
                tracing::info!(cluster = %shared.cluster, endpoint = %e.address, "ejected endpoint readmitted after a passed probe");
            }
        }
        Ok(()) => {}
        Err(err) => {
            shared.counters.probe_failed();
            tracing::debug!(cluster = %shared.cluster, endpoint = %e.address, error = %err, "readmission probe failed");
        }
    }
    c.probing.store(false, SeqCst);
}

/// The background task: interval ticks and healing reports, until the detection is
/// dropped.
pub(super) async fn run(weak: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    let later = |from: tokio::time::Instant| {
        from.checked_add(interval)
            .unwrap_or_else(|| from + Duration::from_secs(24 * 3600))
    };
    let mut next = later(tokio::time::Instant::now());
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = wake.notified() => {}
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.closed.load(SeqCst) {
            return;
        }
        shared.report_pending();
        let now = tokio::time::Instant::now();
        if now >= next {
            shared.tick();
            next = later(now);
        }
    }
}
