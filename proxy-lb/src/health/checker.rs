//! The `health_check` cluster extension: a background task per cluster probing every
//! endpoint each interval (plus jitter).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst},
        Arc, Weak,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, HealthFlags},
    Endpoint,
};
use serde_json::json;
use tokio::sync::Notify;

use super::{
    config::{HealthCheckConfig, Verdicts},
    metrics::ClusterHealthCounters,
    run::probe_endpoint,
};
use crate::ConfigError;

/// Most probes of one cluster running at once: a cluster of 10,000 endpoints must not
/// open 10,000 sockets in the same instant (file descriptors, a SYN burst at the
/// backends). A round takes longer instead.
const MAX_PROBES_IN_FLIGHT: usize = 256;

#[derive(Debug, Default)]
struct State {
    endpoints: Arc<[Arc<Endpoint>]>,
    verdicts: Vec<Arc<EndpointHealth>>,
}

/// One endpoint's probe history.
#[derive(Debug, Default)]
struct EndpointHealth {
    verdicts: Verdicts,
    /// Whether this health check has the endpoint failed (`ACTIVE_HC_FAILED` is set
    /// for it): the flag follows this, and is cleared when the check is dropped.
    failed: AtomicBool,
    checks: AtomicU64,
    last_error: arc_swap::ArcSwapOption<String>,
}

#[derive(Debug)]
struct Shared {
    cfg: HealthCheckConfig,
    cluster: Arc<str>,
    state: ArcSwap<State>,
    counters: Arc<ClusterHealthCounters>,
    started: AtomicBool,
    closed: AtomicBool,
    wake: Arc<Notify>,
}

/// Active health checking of one cluster. Dropping it stops its background task.
///
/// # Example
/// Built from its typed config and attached to a cluster built in code (the
/// registry's `health_check` factory makes the same from a config section):
/// ```
/// use std::{sync::Arc, time::Duration};
/// use proxy_core::cluster::Cluster;
/// use proxy_lb::health::{HealthCheck, HealthCheckConfig, HttpProbeConfig, ProbeConfig};
///
/// let cfg = HealthCheckConfig {
///     interval: Duration::from_secs(2),
///     probe: ProbeConfig::Http(HttpProbeConfig {
///         path: "/healthz".into(),
///         expected_statuses: vec![200, 204],
///         ..HttpProbeConfig::default()
///     }),
///     ..HealthCheckConfig::default()
/// };
/// let check = Arc::new(HealthCheck::new(cfg, "app", Arc::default())?);
/// let app = Cluster::builder("app")
///     .endpoint("10.0.0.1:8080".parse()?)
///     .extension(check)
///     .build()?;
/// assert_eq!(app.extensions.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HealthCheck {
    shared: Arc<Shared>,
}

/// A dropped health check is retired too (a cluster built in code, or a server that
/// did not retire it).
impl Drop for HealthCheck {
    fn drop(&mut self) {
        self.shared.retire();
    }
}

impl HealthCheck {
    /// Health checks for cluster `cluster`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(
        cfg: HealthCheckConfig,
        cluster: &str,
        counters: Arc<ClusterHealthCounters>,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                cluster: cluster.into(),
                state: ArcSwap::from_pointee(State::default()),
                counters,
                started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
            }),
        })
    }
}

impl ClusterExtension for HealthCheck {
    fn activate(&self, cluster: &ClusterInfo) {
        let old = self.shared.state.load_full();
        let by_ptr: HashMap<usize, &Arc<EndpointHealth>> = old
            .endpoints
            .iter()
            .zip(&old.verdicts)
            .map(|(e, v)| (Arc::as_ptr(e) as usize, v))
            .collect();
        let verdicts = cluster
            .endpoints
            .iter()
            .map(|e| {
                by_ptr
                    .get(&(Arc::as_ptr(e) as usize))
                    .map_or_else(Arc::default, |v| Arc::clone(v))
            })
            .collect();
        self.shared.state.store(Arc::new(State {
            endpoints: cluster.endpoints.clone(),
            verdicts,
        }));
        self.shared.sync_flags(&self.shared.state.load());
        if self.shared.started.swap(true, SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.shared.started.store(false, SeqCst);
            tracing::warn!(cluster = %self.shared.cluster, "health checks activated outside a runtime; not running");
            return;
        };
        rt.spawn(run(Arc::downgrade(&self.shared), self.shared.wake.clone()));
    }

    /// The section went or changed: the endpoints this check failed serve again at
    /// once (a new instance's endpoints start healthy), and the probes stop.
    fn retire(&self) {
        self.shared.retire();
    }

    fn status(&self) -> serde_json::Value {
        let st = self.shared.state.load();
        let endpoints: Vec<serde_json::Value> = st
            .endpoints
            .iter()
            .zip(&st.verdicts)
            .map(|(e, h)| {
                json!({
                    "address": e.address.to_string(),
                    "healthy": !h.failed.load(Relaxed),
                    "checks": h.checks.load(Relaxed),
                    "last_error": h.last_error.load().as_deref().cloned(),
                })
            })
            .collect();
        json!({"type": "health_check", "endpoints": endpoints})
    }
}

impl Shared {
    /// Stops the checks and clears every flag this check set. Idempotent.
    fn retire(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        self.wake.notify_one();
        let st = self.state.load();
        for (e, h) in st.endpoints.iter().zip(&st.verdicts) {
            if h.failed.load(SeqCst) {
                e.clear_health_flag(HealthFlags::ACTIVE_HC_FAILED);
            }
        }
    }

    /// Makes `ACTIVE_HC_FAILED` on the watched endpoints say what this check decided:
    /// set where it failed them, cleared elsewhere (left by a retired instance).
    fn sync_flags(&self, st: &State) {
        if self.closed.load(SeqCst) {
            return;
        }
        for (e, h) in st.endpoints.iter().zip(&st.verdicts) {
            let has = e.health_flags().contains(HealthFlags::ACTIVE_HC_FAILED);
            if h.failed.load(SeqCst) {
                if !has {
                    self.set_flag(e);
                }
            } else if has
                && e.clear_health_flag(HealthFlags::ACTIVE_HC_FAILED)
                && h.failed.load(SeqCst)
            {
                self.set_flag(e);
            }
        }
    }

    /// Sets `ACTIVE_HC_FAILED` on `e` unless the check is retired (a setter racing
    /// with the drop takes its flag back).
    fn set_flag(&self, e: &Endpoint) -> bool {
        let new = e.set_health_flag(HealthFlags::ACTIVE_HC_FAILED);
        if self.closed.load(SeqCst) {
            e.clear_health_flag(HealthFlags::ACTIVE_HC_FAILED);
        }
        new
    }

    /// One round: every endpoint probed at once; flags flipped at the thresholds.
    async fn round(self: &Arc<Self>) {
        let st = self.state.load_full();
        self.sync_flags(&st);
        let mut probes = tokio::task::JoinSet::new();
        for (e, h) in st.endpoints.iter().zip(&st.verdicts) {
            if e.health_flags().contains(HealthFlags::REMOVED) {
                continue;
            }
            // A bounded number of probes (sockets) at once, however many endpoints.
            while probes.len() >= MAX_PROBES_IN_FLIGHT {
                probes.join_next().await;
            }
            let (e, h, shared) = (e.clone(), h.clone(), self.clone());
            probes.spawn(async move {
                let result = probe_endpoint(&e, &shared.cfg.probe, shared.cfg.timeout).await;
                h.checks.fetch_add(1, Relaxed);
                shared.counters.checked(result.as_ref().err().map(|e| e.label()));
                let healthy_now = !h.failed.load(SeqCst);
                match &result {
                    Ok(()) => h.last_error.store(None),
                    Err(err) => h.last_error.store(Some(Arc::new(err.to_string()))),
                }
                match h.verdicts.record(result.is_ok(), healthy_now, &shared.cfg) {
                    Some(true) if h.failed.swap(false, SeqCst) => {
                        e.clear_health_flag(HealthFlags::ACTIVE_HC_FAILED);
                        shared.counters.transition(true);
                        tracing::info!(cluster = %shared.cluster, endpoint = %e.address, "endpoint passed its health checks");
                    }
                    Some(false) if !h.failed.swap(true, SeqCst) => {
                        shared.set_flag(&e);
                        shared.counters.transition(false);
                        tracing::warn!(cluster = %shared.cluster, endpoint = %e.address, "endpoint failed its health checks");
                    }
                    _ => {}
                }
            });
        }
        while probes.join_next().await.is_some() {}
    }

    fn next_delay(&self) -> Duration {
        let jitter = self.cfg.jitter.as_millis() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            fastrand::u64(..=jitter)
        };
        self.cfg
            .interval
            .saturating_add(Duration::from_millis(extra))
    }
}

/// The background task: a first round at once, then one per interval (plus jitter),
/// until the health check is dropped.
async fn run(weak: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let delay = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if shared.closed.load(SeqCst) {
                return;
            }
            shared.round().await;
            shared.next_delay()
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_round_keeps_a_bounded_number_of_probes_open() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            // A backend that accepts and never answers: every HTTP probe holds its
            // socket until its timeout.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let open = Arc::new(AtomicU64::new(0));
            let peak = Arc::new(AtomicU64::new(0));
            let (o, p) = (open.clone(), peak.clone());
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let n = o.fetch_add(1, SeqCst) + 1;
                    p.fetch_max(n, SeqCst);
                    let o = o.clone();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 512];
                        while tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                            .await
                            .is_ok_and(|n| n > 0)
                        {}
                        o.fetch_sub(1, SeqCst);
                    });
                }
            });
            let endpoints: Arc<[Arc<Endpoint>]> = (0..(MAX_PROBES_IN_FLIGHT + 150))
                .map(|_| {
                    Arc::new(Endpoint::new(
                        addr,
                        std::num::NonZeroU32::MIN,
                        BTreeMap::new(),
                    ))
                })
                .collect();
            let cfg: HealthCheckConfig = proxy_core::config::from_yaml(
                "{interval: 1h, timeout: 300ms, probe: {http: {path: /healthz}}}",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let counters = Arc::new(ClusterHealthCounters::default());
            let hc =
                HealthCheck::new(cfg, "many", counters.clone()).unwrap_or_else(|e| panic!("{e}"));
            hc.activate(&ClusterInfo {
                name: "many".into(),
                endpoints: endpoints.clone(),
            });
            let total = endpoints.len() as u64;
            // Half way through the first probes' timeout: only the first batch is open.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let first_batch = open.load(SeqCst);
            assert!(
                first_batch <= MAX_PROBES_IN_FLIGHT as u64,
                "{first_batch} probes open at once"
            );
            for _ in 0..300 {
                if counters.results("timeout") >= total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(counters.results("timeout"), total, "every endpoint probed");
            // The backend sees a closed probe's EOF a little after the next probe
            // connects, so its own count may briefly run over; never to all of them.
            let peak = peak.load(SeqCst);
            assert!(peak < total, "{peak} of {total} probes open at once");
        });
    }

    #[test]
    fn probes_flip_the_flag_and_the_task_stops_on_drop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            // A port nothing listens on: bound, then closed.
            let dead = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("{e}"));
            let ep = Arc::new(Endpoint::new(
                dead,
                std::num::NonZeroU32::MIN,
                BTreeMap::new(),
            ));
            let endpoints: Arc<[Arc<Endpoint>]> = vec![ep.clone()].into();
            let cfg = HealthCheckConfig {
                interval: Duration::from_millis(10),
                timeout: Duration::from_millis(100),
                unhealthy_threshold: std::num::NonZeroU32::new(2)
                    .unwrap_or(std::num::NonZeroU32::MIN),
                ..HealthCheckConfig::default()
            };
            let counters = Arc::new(ClusterHealthCounters::default());
            let hc = HealthCheck::new(cfg, "c", counters.clone()).unwrap_or_else(|e| panic!("{e}"));
            hc.activate(&ClusterInfo {
                name: "c".into(),
                endpoints,
            });
            let alive = || {
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks()
            };
            for _ in 0..200 {
                if ep.health_flags().contains(HealthFlags::ACTIVE_HC_FAILED) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(ep.health_flags().contains(HealthFlags::ACTIVE_HC_FAILED));
            assert!(counters.results("connect_failure") >= 2);
            assert_eq!(hc.status()["endpoints"][0]["healthy"], false);
            drop(hc);
            for _ in 0..100 {
                if alive() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                alive(),
                0,
                "the task stops when the health check is dropped"
            );
        });
    }
}
