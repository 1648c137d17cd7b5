//! The `outlier_detection` cluster extension: counters on the request path and
//! ejection on thresholds. The background task per cluster (interval evaluation,
//! readmission probes, healing reports) is in `background.rs`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, HealthFlags, Outcome},
    config::Percent,
    Endpoint,
};
use serde_json::json;
use tokio::sync::Notify;

use super::{
    config::{HealingConfig, OutlierConfig},
    counters::{Attempt, EndpointCounters, Thresholds},
    math::{ejection_time, enforced, may_eject, EjectionReason},
    metrics::ClusterOutlierCounters,
};
use crate::{
    healing::{HealingSink, WebhookSink},
    ConfigError,
};

/// Attempts to report one ejection to the healing sink.
pub(super) const REPORT_ATTEMPTS: u32 = 3;

/// The endpoints watched now, with their counters.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) endpoints: Arc<[Arc<Endpoint>]>,
    pub(super) per: Vec<Arc<EndpointCounters>>,
    pub(super) by_ptr: HashMap<usize, usize>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) cfg: OutlierConfig,
    pub(super) thresholds: Thresholds,
    pub(super) cluster: Arc<str>,
    pub(super) epoch: Instant,
    pub(super) state: ArcSwap<State>,
    pub(super) ejected: AtomicUsize,
    /// Endpoints removed at the sink's request: out like the ejected ones, counted
    /// against the same max-ejection and panic limits.
    pub(super) removed: AtomicUsize,
    pub(super) sink: Option<Arc<dyn HealingSink>>,
    pub(super) counters: Arc<ClusterOutlierCounters>,
    pub(super) started: AtomicBool,
    pub(super) closed: AtomicBool,
    pub(super) wake: Arc<Notify>,
}

/// Outlier detection for one cluster. Dropping it stops its background task.
///
/// # Example
/// Built from its typed config and attached to a cluster built in code (the
/// registry's `outlier_detection` factory makes the same from a config section):
/// ```
/// use std::{num::NonZeroU32, sync::Arc};
/// use proxy_core::cluster::Cluster;
/// use proxy_lb::outlier::{OutlierConfig, OutlierDetection};
///
/// let cfg = OutlierConfig {
///     consecutive_5xx: NonZeroU32::new(5),
///     max_ejection_percent: 50.0.try_into()?,
///     ..OutlierConfig::default()
/// };
/// let detection = Arc::new(OutlierDetection::new(cfg, "app", Arc::default(), None)?);
/// let app = Cluster::builder("app")
///     .endpoint("10.0.0.1:8080".parse()?)
///     .endpoint("10.0.0.2:8080".parse()?)
///     .extension(detection.clone())
///     .build()?;
/// assert_eq!(app.extensions.len(), 1);
/// assert_eq!(detection.ejected_count(), 0);
///
/// // Absent ejection rules are off; none on at all is refused.
/// let err = OutlierDetection::new(OutlierConfig::default(), "app", Arc::default(), None);
/// assert!(err.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OutlierDetection {
    shared: Arc<Shared>,
}

/// A dropped detection is retired too (a cluster built in code, or a server that did
/// not retire it).
impl Drop for OutlierDetection {
    fn drop(&mut self) {
        self.shared.retire();
    }
}

impl OutlierDetection {
    /// Detection for cluster `cluster` with `cfg`; ejections go to `sink` when given,
    /// else to the config's webhook, if any.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(
        cfg: OutlierConfig,
        cluster: &str,
        counters: Arc<ClusterOutlierCounters>,
        sink: Option<Arc<dyn HealingSink>>,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let sink = match (sink, &cfg.healing) {
            (Some(s), _) => Some(s),
            (None, Some(HealingConfig::Webhook(w))) => Some(Arc::new(
                WebhookSink::new(w).map_err(|e| e.within("healing.webhook"))?,
            ) as Arc<dyn HealingSink>),
            (None, None) => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                thresholds: Thresholds {
                    consecutive_5xx: cfg.consecutive_5xx.map_or(0, |n| n.get()),
                    consecutive_gateway: cfg.consecutive_gateway_failure.map_or(0, |n| n.get()),
                },
                cfg,
                cluster: cluster.into(),
                epoch: Instant::now(),
                state: ArcSwap::from_pointee(State::default()),
                ejected: AtomicUsize::new(0),
                removed: AtomicUsize::new(0),
                sink,
                counters,
                started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
            }),
        })
    }

    /// The counters of `endpoint`, when it is watched.
    pub fn endpoint_counters(&self, endpoint: &Arc<Endpoint>) -> Option<Arc<EndpointCounters>> {
        let st = self.shared.state.load();
        let i = *st.by_ptr.get(&(Arc::as_ptr(endpoint) as usize))?;
        st.per.get(i).cloned()
    }

    /// Endpoints ejected now.
    pub fn ejected_count(&self) -> usize {
        self.shared.ejected.load(Relaxed)
    }

    /// Endpoints removed at the healing sink's request now.
    pub fn removed_count(&self) -> usize {
        self.shared.removed.load(Relaxed)
    }

    /// Undoes a removal (or an ejection) of the endpoint at `address`: it takes
    /// traffic again at once, with its ejection count kept. Returns whether it was out.
    /// A config change does the same for every endpoint: a changed or deleted
    /// `outlier_detection` section clears every flag the detection set.
    pub fn restore(&self, address: std::net::SocketAddr) -> bool {
        let st = self.shared.state.load_full();
        let mut any = false;
        for (i, e) in st.endpoints.iter().enumerate() {
            if e.address == address {
                any |= self.shared.restore(&st, i);
            }
        }
        any
    }
}

impl ClusterExtension for OutlierDetection {
    fn activate(&self, cluster: &ClusterInfo) {
        self.shared.adopt(&cluster.endpoints);
        self.shared.sync_flags(&self.shared.state.load());
        if self.shared.started.swap(true, SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.shared.started.store(false, SeqCst);
            tracing::warn!(cluster = %self.shared.cluster, "outlier detection activated outside a runtime; no interval task");
            return;
        };
        let weak = Arc::downgrade(&self.shared);
        let wake = self.shared.wake.clone();
        rt.spawn(super::background::run(weak, wake, self.shared.cfg.interval));
    }

    fn on_outcome(&self, endpoint: &Arc<Endpoint>, outcome: &Outcome, latency: Duration) {
        let st = self.shared.state.load();
        // Small sets: a pointer scan beats hashing.
        let found = if st.endpoints.len() <= 16 {
            st.endpoints.iter().position(|e| Arc::ptr_eq(e, endpoint))
        } else {
            st.by_ptr.get(&(Arc::as_ptr(endpoint) as usize)).copied()
        };
        let Some(i) = found else {
            return;
        };
        if let Some(h) = &st.per[i].latency {
            h.record(latency);
        }
        let attempt = if outcome.is_error() {
            Attempt::Failure {
                gateway: outcome.is_gateway_failure(),
            }
        } else {
            Attempt::Success
        };
        if let Some(reason) = st.per[i].record(attempt, self.shared.thresholds) {
            self.shared.try_eject(&st, i, reason);
        }
    }

    /// The section went or changed: every endpoint this detection ejected or removed
    /// serves again at once (a changed section is a new instance, which starts with
    /// every endpoint in), and the background task stops.
    fn retire(&self) {
        self.shared.retire();
    }

    fn status(&self) -> serde_json::Value {
        let st = self.shared.state.load();
        let now = self.shared.now_ms();
        let endpoints: Vec<serde_json::Value> = st
            .endpoints
            .iter()
            .zip(&st.per)
            .map(|(e, c)| {
                let ejected = c.ejected.load(Relaxed);
                let times = c.times_ejected.load(Relaxed);
                let remaining = ejected.then(|| {
                    let d = self.shared.ejection_time(times).as_millis() as u64;
                    d.saturating_sub(now.saturating_sub(c.ejected_at_ms.load(Relaxed)))
                });
                json!({
                    "address": e.address.to_string(),
                    "ejected": ejected,
                    "removed": c.removed.load(Relaxed),
                    "times_ejected": times,
                    "last_reason": c.last_reason().map(EjectionReason::as_str),
                    "ejection_remaining_ms": remaining,
                    "consecutive_5xx": c.consecutive_5xx(),
                    "consecutive_gateway_failure": c.consecutive_gateway(),
                })
            })
            .collect();
        json!({
            "type": "outlier_detection",
            "ejected": self.shared.ejected.load(Relaxed),
            "removed": self.shared.removed.load(Relaxed),
            "endpoints": endpoints,
        })
    }
}

impl Shared {
    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn ejection_time(&self, times: u32) -> Duration {
        ejection_time(
            self.cfg.base_ejection_time,
            self.cfg.max_ejection_time,
            times,
        )
    }

    /// Stops the detection and clears every flag it set. Idempotent.
    fn retire(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        self.wake.notify_one();
        let st = self.state.load();
        for (e, c) in st.endpoints.iter().zip(&st.per) {
            if c.ejected.load(SeqCst) && e.clear_health_flag(HealthFlags::EJECTED) {
                self.counters.left_ejection();
            }
            if c.removed.load(SeqCst) {
                e.clear_health_flag(HealthFlags::REMOVED);
            }
        }
    }

    /// Takes a new endpoint set, keeping the counters (and the ejections and removals)
    /// of endpoints it had. Flags on endpoints it never had are not its own: an
    /// earlier instance's, of a section that changed or went; they are not adopted.
    fn adopt(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        let old = self.state.load_full();
        let mut per = Vec::with_capacity(endpoints.len());
        let mut by_ptr = HashMap::with_capacity(endpoints.len());
        let (mut ejected, mut removed) = (0, 0);
        for (i, e) in endpoints.iter().enumerate() {
            let key = Arc::as_ptr(e) as usize;
            let c = old
                .by_ptr
                .get(&key)
                .and_then(|&j| old.per.get(j).cloned())
                .unwrap_or_else(|| {
                    Arc::new(if self.cfg.latency.is_some() {
                        EndpointCounters::with_latency()
                    } else {
                        EndpointCounters::default()
                    })
                });
            ejected += usize::from(c.ejected.load(Relaxed));
            removed += usize::from(c.removed.load(Relaxed));
            by_ptr.insert(key, i);
            per.push(c);
        }
        self.ejected.store(ejected, SeqCst);
        self.removed.store(removed, SeqCst);
        self.state.store(Arc::new(State {
            endpoints: endpoints.clone(),
            per,
            by_ptr,
        }));
    }

    /// Makes the `EJECTED` and `REMOVED` flags of the watched endpoints say what this
    /// detection decided: its own set, any other cleared (left by a retired instance,
    /// or by a refused ejection's brief claim). Run at activation and every interval.
    pub(super) fn sync_flags(&self, st: &State) {
        if self.closed.load(SeqCst) {
            return;
        }
        for (e, c) in st.endpoints.iter().zip(&st.per) {
            for (mine, flag) in [
                (&c.ejected, HealthFlags::EJECTED),
                (&c.removed, HealthFlags::REMOVED),
            ] {
                let has = e.health_flags().contains(flag);
                if mine.load(SeqCst) {
                    if !has {
                        self.set_flag(e, flag);
                    }
                } else if has && e.clear_health_flag(flag) && mine.load(SeqCst) {
                    // Claimed in between: put it back.
                    self.set_flag(e, flag);
                }
            }
        }
    }

    /// Sets `flag` on `e`, unless this detection is retired (its drop clears what it
    /// set; a setter racing with it takes its flag back).
    pub(super) fn set_flag(&self, e: &Endpoint, flag: HealthFlags) {
        e.set_health_flag(flag);
        if self.closed.load(SeqCst) {
            e.clear_health_flag(flag);
        }
    }

    /// Takes endpoint `i` back in: not removed, not ejected. Returns whether it was out.
    pub(super) fn restore(&self, st: &State, i: usize) -> bool {
        let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
            return false;
        };
        let removed = c.removed.swap(false, SeqCst);
        if removed {
            e.clear_health_flag(HealthFlags::REMOVED);
            self.removed.fetch_sub(1, SeqCst);
        }
        let ejected = c.ejected.swap(false, SeqCst);
        if ejected {
            c.reset_consecutive();
            c.last_change_ms.store(self.now_ms(), Relaxed);
            e.clear_health_flag(HealthFlags::EJECTED);
            self.ejected.fetch_sub(1, SeqCst);
            self.counters.left_ejection();
        }
        if removed || ejected {
            tracing::info!(cluster = %self.cluster, endpoint = %e.address, "endpoint restored");
        }
        removed || ejected
    }

    fn enforcement(&self, reason: EjectionReason) -> Percent {
        let cfg = &self.cfg;
        match reason {
            EjectionReason::Consecutive5xx => cfg.enforcing_consecutive_5xx_percent,
            EjectionReason::ConsecutiveGatewayFailure => {
                cfg.enforcing_consecutive_gateway_failure_percent
            }
            EjectionReason::SuccessRate => cfg
                .success_rate
                .as_ref()
                .map_or(Percent::ZERO, |s| s.enforcing_percent),
            EjectionReason::FailurePercentage => cfg
                .failure_percentage
                .as_ref()
                .map_or(Percent::ZERO, |f| f.enforcing_percent),
            EjectionReason::Latency => cfg
                .latency
                .as_ref()
                .map_or(Percent::ZERO, |l| l.enforcing_percent),
        }
    }

    /// Whether one more endpoint may go out of `st`'s, with `ejected` ejected now: the
    /// max-ejection and panic limits count removed endpoints as out too, over every
    /// endpoint of the cluster, so that neither ejections nor a healing sink's
    /// removals take more than `max_ejection_percent` out (one always allowed when
    /// none is out), nor leave fewer than `panic_threshold_percent` healthy.
    pub(super) fn may_take_out(&self, st: &State, ejected: usize) -> bool {
        let total = st.endpoints.len();
        let healthy = st.endpoints.iter().filter(|e| e.is_healthy()).count();
        may_eject(
            total,
            ejected + self.removed.load(SeqCst),
            healthy,
            self.cfg.max_ejection_percent,
            self.cfg.panic_threshold_percent,
        )
    }

    /// Ejects endpoint `i` unless it is out already, enforcement says no, or the
    /// max-ejection or panic limits forbid it. Atomics only (a scan of the endpoint
    /// set, which happens only when a threshold is crossed).
    pub(super) fn try_eject(&self, st: &State, i: usize, reason: EjectionReason) {
        let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
            return;
        };
        if c.removed.load(Relaxed) || c.ejected.load(Relaxed) {
            return;
        }
        if !enforced(self.enforcement(reason), fastrand::u32(..)) {
            return;
        }
        if c.ejected
            .compare_exchange(false, true, SeqCst, Relaxed)
            .is_err()
        {
            return;
        }
        let mut cur = self.ejected.load(SeqCst);
        loop {
            if !self.may_take_out(st, cur) {
                c.ejected.store(false, SeqCst);
                self.counters.refused();
                return;
            }
            match self.ejected.compare_exchange(cur, cur + 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let times = c.times_ejected.fetch_add(1, Relaxed).saturating_add(1);
        c.ejected_at_ms.store(self.now_ms(), Relaxed);
        c.reason.store(reason as u8, Relaxed);
        self.set_flag(e, HealthFlags::EJECTED);
        self.counters.ejected(reason);
        tracing::warn!(cluster = %self.cluster, endpoint = %e.address, reason = reason.as_str(), times, "endpoint ejected");
        if self.sink.is_some() {
            c.report_failures.store(0, Relaxed);
            c.pending_report.store(true, SeqCst);
            self.wake.notify_one();
        }
    }
}
