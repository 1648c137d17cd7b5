//! The session loop against a scripted link: one swap per interval however many
//! responses came, every response answered in order once live, a NACK in the
//! burst, the session ending on the live state.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy},
                Cluster,
            },
            core::v3::{
                address::Address as Addr, socket_address::PortSpecifier, Address, SocketAddress,
            },
            endpoint::v3::{
                lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                LocalityLbEndpoints,
            },
        },
        service::discovery::v3::{DiscoveryRequest, DiscoveryResponse},
    },
    google::protobuf::Any,
};
use futures_util::future::BoxFuture;
use prost::Message;
use proxy_core::{config::Config, Registry, Server};
use tokio::sync::{mpsc, watch};

use super::{Link, Received};
use crate::{
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE},
    state::AdsState,
    StreamError, XdsClient, XdsConfig, XdsStatus,
};

/// Responses from a channel; requests into a list.
struct Scripted {
    inbound: mpsc::Receiver<DiscoveryResponse>,
    sent: Arc<Mutex<Vec<DiscoveryRequest>>>,
}

impl Link<AdsState> for Scripted {
    fn recv(&mut self) -> Received<'_, DiscoveryResponse> {
        Box::pin(async move { Ok(self.inbound.recv().await.map(|r| (None, r))) })
    }

    fn send(
        &mut self,
        req: DiscoveryRequest,
        _origin: Option<&'static str>,
    ) -> BoxFuture<'_, Result<(), StreamError>> {
        self.sent.lock().unwrap().push(req);
        Box::pin(async { Ok(()) })
    }
}

fn base() -> Config {
    Config::from_yaml(
        "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {}, cluster: a}]}]}]",
    )
    .unwrap()
}

fn response(type_url: &str, nonce: &str, value: Vec<u8>) -> DiscoveryResponse {
    DiscoveryResponse {
        type_url: type_url.into(),
        version_info: format!("v-{nonce}"),
        nonce: nonce.into(),
        resources: vec![Any {
            type_url: type_url.into(),
            value,
        }],
        ..DiscoveryResponse::default()
    }
}

fn cluster(name: &str, lb_policy: LbPolicy) -> Any {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        lb_policy: lb_policy as i32,
        ..Cluster::default()
    };
    Any {
        type_url: CLUSTER_TYPE.into(),
        value: c.encode_to_vec(),
    }
}

fn cds(nonce: &str) -> DiscoveryResponse {
    let mut resp = response(CLUSTER_TYPE, nonce, Vec::new());
    resp.resources = vec![cluster("a", LbPolicy::RoundRobin)];
    resp
}

/// Cluster `a` on 127.0.0.1:`port` (0 is refused).
fn eds(nonce: &str, port: u32) -> DiscoveryResponse {
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(Addr::SocketAddress(SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..SocketAddress::default()
                })),
            }),
            ..Endpoint::default()
        })),
        ..LbEndpoint::default()
    };
    let cla = ClusterLoadAssignment {
        cluster_name: "a".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint],
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    };
    response(ENDPOINT_TYPE, nonce, cla.encode_to_vec())
}

/// How a session ended, the state it left, whether a response came.
type Ended = (Result<(), StreamError>, Arc<AdsState>, bool);

/// The requests a session sent.
type Sent = Arc<Mutex<Vec<DiscoveryRequest>>>;

/// A running session: the client's status, its server, the sender of the
/// responses, the requests sent, and the session task.
type Running = (
    watch::Receiver<XdsStatus>,
    Server,
    mpsc::Sender<DiscoveryResponse>,
    Sent,
    tokio::task::JoinHandle<Ended>,
);

/// A client with `interval` between swaps and its server (no balancer
/// registered but the core's), in a session on a scripted link.
fn session(interval: Duration) -> Running {
    let mut config = XdsConfig::new("127.0.0.1:1", "n");
    config.apply_min_interval = interval;
    let client = Arc::new(XdsClient::new(config, base()));
    let status = client.status();
    let server = Server::new(client.initial_config(), Registry::default()).unwrap();
    let (tx, inbound) = mpsc::channel(512);
    let list = Arc::new(Mutex::new(Vec::new()));
    let mut link = Scripted {
        inbound,
        sent: list.clone(),
    };
    let task = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut session = Arc::new(AdsState::default());
            let (mut last, mut got) = (None, false);
            let end = client
                .drive(&mut link, &mut session, &server, &mut last, &mut got)
                .await;
            (end, session, got)
        })
    };
    (status, server, tx, list, task)
}

/// (type, nonce, NACK detail) of each request sent so far.
fn sent(list: &Mutex<Vec<DiscoveryRequest>>) -> Vec<(String, String, Option<String>)> {
    list.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let detail = r.error_detail.as_ref().map(|e| e.message.clone());
            (r.type_url.clone(), r.response_nonce.clone(), detail)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_goes_live_in_one_swap_and_every_response_is_answered_after_it() {
    let interval = Duration::from_millis(800);
    let (status, server, tx, list, session) = session(interval);

    // The first response after a quiet time goes live at once.
    tx.send(cds("c1")).await.unwrap();
    let mut watching = status.clone();
    tokio::time::timeout(interval / 2, watching.wait_for(|s| s.applied == 1))
        .await
        .expect("applied at once")
        .unwrap();
    let started = std::time::Instant::now();
    // A burst, one refused in the middle.
    for i in 1..=40u32 {
        let port = if i == 20 { 0 } else { 8000 + i };
        tx.send(eds(&format!("e{i}"), port)).await.unwrap();
    }
    tokio::time::sleep(interval / 4).await;
    let early = sent(&list);
    if started.elapsed() < interval / 2 {
        // Only the CDS answers (the EDS subscription, the ACK) went: the burst
        // waits for its swap.
        assert_eq!(early.len(), 2, "{early:?}");
    }
    tokio::time::timeout(interval * 4, watching.wait_for(|s| s.applied == 2))
        .await
        .expect("the burst went live")
        .unwrap();
    tokio::time::sleep(interval / 4).await;
    let all = sent(&list);
    assert_eq!(status.borrow().applied, 2, "one swap for the burst");
    assert_eq!(all.len(), 42, "{all:?}");
    for (i, (ty, nonce, detail)) in all[2..].iter().enumerate() {
        assert_eq!(
            (ty.as_str(), nonce.as_str()),
            (ENDPOINT_TYPE, format!("e{}", i + 1).as_str())
        );
        if i + 1 == 20 {
            let detail = detail.as_deref().unwrap_or_default();
            assert!(detail.contains("port_value"), "{detail}");
        } else {
            assert_eq!(detail, &None, "e{}", i + 1);
        }
    }
    let live = server.snapshot();
    let a = live.config.clusters.iter().find(|c| c.name == "a").unwrap();
    assert_eq!(a.endpoints.len(), 1);
    assert_eq!(a.endpoints[0].address().port(), 8040);
    let t = status.borrow().types["endpoints"].clone();
    assert_eq!(
        (t.received, t.applied, t.coalesced, t.nacks),
        (40, 1, 38, 1)
    );

    // The stream ends: the session keeps the live state.
    drop(tx);
    let (end, state, got) = session.await.unwrap();
    assert!(matches!(end, Err(StreamError::Closed)), "{end:?}");
    assert!(got);
    assert_eq!(state.eds.version, "v-e40");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_swap_is_replayed_so_only_the_response_at_fault_is_nacked() {
    let interval = Duration::from_millis(600);
    let (status, server, tx, list, session) = session(interval);
    tx.send(cds("c1")).await.unwrap();
    let mut watching = status.clone();
    tokio::time::timeout(interval * 4, watching.wait_for(|s| s.applied == 1))
        .await
        .expect("the clusters go live")
        .unwrap();

    // A burst whose merged config the server refuses: cluster `m` asks for a
    // balancer this server has not registered.
    let mut bad = cds("c2");
    bad.resources.push(cluster("m", LbPolicy::Maglev));
    for resp in [eds("e1", 8001), bad, eds("e2", 8002)] {
        tx.send(resp).await.unwrap();
    }
    let answered = |n: usize| {
        let list = list.clone();
        async move {
            while sent(&list).len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The CDS answers, then e1's ACK, c2's NACK, e2's ACK.
    tokio::time::timeout(interval * 6, answered(5))
        .await
        .expect("every response answered");
    let all = sent(&list);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!((all[2].1.as_str(), &all[2].2), ("e1", &None));
    assert_eq!(all[3].1, "c2");
    let detail = all[3].2.as_deref().unwrap_or_default();
    assert!(detail.starts_with("cluster \"m\""), "{detail}");
    assert_eq!((all[4].1.as_str(), &all[4].2), ("e2", &None));
    // e1 and e2 went live each in a swap of its own; `m` never did.
    assert_eq!(status.borrow().applied, 3);
    let live = server.snapshot();
    assert!(live.config.clusters.iter().all(|c| c.name != "m"));
    let a = live.config.clusters.iter().find(|c| c.name == "a").unwrap();
    assert_eq!(a.endpoints[0].address().port(), 8002);

    drop(tx);
    let (_, state, _) = session.await.unwrap();
    assert_eq!(state.eds.version, "v-e2");
    assert_eq!(state.cds.version, "v-c1");
}
