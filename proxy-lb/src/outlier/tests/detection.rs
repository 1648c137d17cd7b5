//! `OutlierDetection` on a cluster's endpoints: ejections, flag ownership, the
//! interval task and healing reports.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::StatusCode;
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, HealthFlags, Outcome},
    Endpoint,
};

use crate::outlier::{ClusterOutlierCounters, EjectionReason, OutlierConfig, OutlierDetection};

fn endpoints(n: u16) -> Arc<[Arc<Endpoint>]> {
    (1..=n)
        .map(|p| {
            Arc::new(Endpoint::new(
                ([127, 0, 0, 1], p).into(),
                std::num::NonZeroU32::MIN,
                BTreeMap::new(),
            ))
        })
        .collect()
}

fn detection(
    yaml: &str,
    eps: &Arc<[Arc<Endpoint>]>,
) -> (OutlierDetection, Arc<ClusterOutlierCounters>) {
    let cfg: OutlierConfig = proxy_core::config::from_yaml(yaml).unwrap();
    let counters = Arc::new(ClusterOutlierCounters::default());
    let d = OutlierDetection::new(cfg, "c", counters.clone(), None).unwrap();
    d.activate(&ClusterInfo {
        name: "c".into(),
        endpoints: eps.clone(),
    });
    (d, counters)
}

const ERR: Outcome = Outcome::Response(StatusCode::INTERNAL_SERVER_ERROR);
const OK: Outcome = Outcome::Response(StatusCode::OK);

#[test]
fn consecutive_5xx_ejects_at_the_count() {
    let eps = endpoints(4);
    let (d, counters) = detection("{consecutive_5xx: 3, max_ejection_percent: 50}", &eps);
    let l = Duration::from_millis(1);
    d.on_outcome(&eps[0], &ERR, l);
    d.on_outcome(&eps[0], &ERR, l);
    d.on_outcome(&eps[0], &OK, l);
    d.on_outcome(&eps[0], &ERR, l);
    d.on_outcome(&eps[0], &ERR, l);
    assert!(eps[0].is_healthy(), "a success reset the count");
    d.on_outcome(&eps[0], &Outcome::ConnectFailure, l);
    assert_eq!(eps[0].health_flags(), HealthFlags::EJECTED);
    assert_eq!(counters.ejections(EjectionReason::Consecutive5xx), 1);
    assert_eq!(d.ejected_count(), 1);
    // 50% of 4: a second may go, a third not.
    for _ in 0..3 {
        d.on_outcome(&eps[1], &ERR, l);
        d.on_outcome(&eps[2], &ERR, l);
    }
    assert_eq!(d.ejected_count(), 2);
    assert!(eps[1].health_flags().contains(HealthFlags::EJECTED));
    assert!(eps[2].is_healthy(), "max_ejection_percent");
    let st = d.status();
    assert_eq!(st["ejected"], 2);
    assert_eq!(st["endpoints"][0]["last_reason"], "consecutive_5xx");
    assert_eq!(st["endpoints"][0]["times_ejected"], 1);
}

#[test]
fn gateway_failures_and_unknown_endpoints() {
    let eps = endpoints(3);
    let (d, counters) = detection(
        "{consecutive_gateway_failure: 2, max_ejection_percent: 100, panic_threshold_percent: 0}",
        &eps,
    );
    let l = Duration::ZERO;
    d.on_outcome(&eps[0], &ERR, l);
    d.on_outcome(&eps[0], &ERR, l);
    assert!(eps[0].is_healthy(), "500 is not a gateway failure");
    d.on_outcome(&eps[0], &Outcome::Response(StatusCode::BAD_GATEWAY), l);
    d.on_outcome(&eps[0], &Outcome::Timeout, l);
    assert!(!eps[0].is_healthy());
    assert_eq!(
        counters.ejections(EjectionReason::ConsecutiveGatewayFailure),
        1
    );
    // An endpoint of another cluster is ignored.
    let stranger = endpoints(1);
    for _ in 0..5 {
        d.on_outcome(&stranger[0], &Outcome::Reset, l);
    }
    assert!(stranger[0].is_healthy());
    assert!(d.endpoint_counters(&stranger[0]).is_none());
}

#[test]
fn flags_are_owned_by_the_instance_that_set_them() {
    let eps = endpoints(3);
    // Left by a retired instance: not adopted, cleared at activation.
    eps[2].set_health_flag(HealthFlags::EJECTED);
    eps[1].set_health_flag(HealthFlags::REMOVED);
    let (d, counters) = detection("{consecutive_5xx: 2, max_ejection_percent: 50}", &eps);
    assert_eq!(d.ejected_count(), 0);
    assert!(eps.iter().all(|e| e.is_healthy()));
    assert_eq!(d.status()["endpoints"][2]["ejected"], false);
    // Its own ejection survives a new endpoint set, with the counters.
    d.on_outcome(&eps[0], &ERR, Duration::ZERO);
    d.on_outcome(&eps[0], &ERR, Duration::ZERO);
    assert_eq!(eps[0].health_flags(), HealthFlags::EJECTED);
    let before = d.endpoint_counters(&eps[0]).unwrap();
    let next: Arc<[Arc<Endpoint>]> = vec![eps[0].clone(), endpoints(9)[8].clone()].into();
    d.activate(&ClusterInfo {
        name: "c".into(),
        endpoints: next.clone(),
    });
    assert!(Arc::ptr_eq(&before, &d.endpoint_counters(&eps[0]).unwrap()));
    assert_eq!(d.ejected_count(), 1);
    assert_eq!(eps[0].health_flags(), HealthFlags::EJECTED);
    // Restored by hand: in at once.
    assert!(d.restore(eps[0].address));
    assert!(eps[0].is_healthy());
    assert_eq!(d.ejected_count(), 0);
    assert!(!d.restore(eps[0].address), "nothing left to undo");
    // Ejected again, then the detection goes (section removed or changed): the
    // flag goes with it.
    d.on_outcome(&eps[0], &ERR, Duration::ZERO);
    d.on_outcome(&eps[0], &ERR, Duration::ZERO);
    assert_eq!(eps[0].health_flags(), HealthFlags::EJECTED);
    drop(d);
    assert!(
        eps[0].is_healthy(),
        "a retired detection clears its ejections"
    );
    assert_eq!(counters.active(), 0, "the active gauge follows");
}

#[test]
fn the_interval_task_stops_when_the_detection_is_dropped() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let eps = endpoints(2);
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        assert_eq!(alive(), 0);
        let (d, _) = detection("{interval: 10ms, consecutive_5xx: 5}", &eps);
        // Activated again (a reload): still one task.
        d.activate(&ClusterInfo {
            name: "c".into(),
            endpoints: eps.clone(),
        });
        assert_eq!(alive(), 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(alive(), 1, "ticking");
        drop(d);
        for _ in 0..50 {
            if alive() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(alive(), 0, "stopped after drop");
    });
}

/// Fails its first report, asks for removal on the next.
#[derive(Debug, Default)]
struct Flaky(std::sync::atomic::AtomicU32);

impl crate::healing::HealingSink for Flaky {
    fn report(&self, _report: crate::healing::EjectionReport) -> crate::healing::ReportFuture {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                Err(crate::healing::HealingError::Status(503))
            } else {
                Ok(crate::healing::HealingAction::Remove)
            }
        })
    }
}

#[test]
fn a_failed_report_is_retried_at_the_next_interval() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let eps = endpoints(3);
        let sink = Arc::new(Flaky::default());
        let cfg: OutlierConfig =
            proxy_core::config::from_yaml("{interval: 10ms, consecutive_5xx: 2}").unwrap();
        let d = OutlierDetection::new(cfg, "c", Arc::default(), Some(sink.clone())).unwrap();
        d.activate(&ClusterInfo {
            name: "c".into(),
            endpoints: eps.clone(),
        });
        d.on_outcome(&eps[1], &ERR, Duration::ZERO);
        d.on_outcome(&eps[1], &ERR, Duration::ZERO);
        assert!(eps[1].health_flags().contains(HealthFlags::EJECTED));
        for _ in 0..100 {
            if eps[1].health_flags().contains(HealthFlags::REMOVED) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(eps[1].health_flags(), HealthFlags::REMOVED);
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(
            d.ejected_count(),
            0,
            "a removed endpoint is not counted as ejected"
        );
    });
}
