//! Background tasks end with their owner: 50 config generations of a cluster with
//! outlier detection (and a healing sink) and health checks, each dropped when the
//! next one arrives, leave no task and no reference behind.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, num::NonZeroU32, sync::Arc, time::Duration};

use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo},
    Endpoint,
};
use proxy_lb::{
    healing::{EjectionReport, HealingAction, HealingSink, ReportFuture},
    health::{HealthCheck, HealthCheckConfig},
    outlier::{ClusterOutlierCounters, OutlierConfig, OutlierDetection},
};

#[derive(Debug)]
struct Sink;

impl HealingSink for Sink {
    fn report(&self, _report: EjectionReport) -> ReportFuture {
        Box::pin(async { Ok(HealingAction::Keep) })
    }
}

#[test]
fn fifty_generations_leave_no_task_behind() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let sink: Arc<dyn HealingSink> = Arc::new(Sink);
        // A port nothing listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let endpoints: Arc<[Arc<Endpoint>]> = (0..3)
            .map(|_| Arc::new(Endpoint::new(dead, NonZeroU32::MIN, BTreeMap::new())))
            .collect();
        let info = ClusterInfo {
            name: "c".into(),
            endpoints,
        };
        let mut generation: Option<(OutlierDetection, HealthCheck)> = None;
        for i in 0..50u64 {
            let outlier: OutlierConfig = proxy_core::config::from_yaml(&format!(
                "{{interval: {}s, consecutive_5xx: 5}}",
                3600 + i
            ))
            .unwrap();
            let od = OutlierDetection::new(
                outlier,
                "c",
                Arc::new(ClusterOutlierCounters::default()),
                Some(sink.clone()),
            )
            .unwrap();
            let health: HealthCheckConfig = proxy_core::config::from_yaml(&format!(
                "{{interval: {}s, timeout: 50ms}}",
                3600 + i
            ))
            .unwrap();
            let hc = HealthCheck::new(health, "c", Arc::default()).unwrap();
            od.activate(&info);
            hc.activate(&info);
            // The new generation is live; the old one is dropped.
            generation = Some((od, hc));
            tokio::task::yield_now().await;
        }
        let settle = |want: usize| async move {
            for _ in 0..200 {
                if alive() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        assert!(
            settle(2).await,
            "one generation's two tasks: {} alive",
            alive()
        );
        assert_eq!(
            Arc::strong_count(&sink),
            2,
            "the live detection holds the sink"
        );
        drop(generation);
        assert!(settle(0).await, "{} tasks outlived their owner", alive());
        assert_eq!(Arc::strong_count(&sink), 1);
    });
}
