use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType},
                Cluster,
            },
            core::v3::{
                address::Address as Addr, socket_address::PortSpecifier, Address, Node,
                SocketAddress,
            },
            endpoint::v3::{
                lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                LocalityLbEndpoints,
            },
        },
        service::discovery::v3::{
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
            Resource,
        },
    },
    google::protobuf::Any,
};
use prost::Message;

use super::*;
use crate::{
    delta::DeltaState,
    resources::{CLUSTER_TYPE, ENDPOINT_TYPE},
    state::AdsState,
};

fn base() -> Config {
    proxy_core::config::from_yaml(
        "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {}, cluster: a}]}]}]",
    )
    .unwrap()
}

fn cluster_any(name: &str) -> Any {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        ..Cluster::default()
    };
    Any {
        type_url: CLUSTER_TYPE.into(),
        value: c.encode_to_vec(),
    }
}

/// The assignment of cluster `name`: one endpoint on 127.0.0.1 at each port
/// (port 0 is refused: `port_value`).
fn assignment_any(name: &str, ports: &[u32]) -> Any {
    let lb_endpoints = ports
        .iter()
        .map(|p| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(Addr::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        port_specifier: Some(PortSpecifier::PortValue(*p)),
                        ..SocketAddress::default()
                    })),
                }),
                ..Endpoint::default()
            })),
            ..LbEndpoint::default()
        })
        .collect();
    let cla = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    };
    Any {
        type_url: ENDPOINT_TYPE.into(),
        value: cla.encode_to_vec(),
    }
}

fn sotw(type_url: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        type_url: type_url.into(),
        version_info: format!("v-{nonce}"),
        nonce: nonce.into(),
        resources,
        ..DiscoveryResponse::default()
    }
}

fn delta(
    type_url: &str,
    nonce: &str,
    resources: Vec<(&str, Any)>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        system_version_info: format!("v-{nonce}"),
        nonce: nonce.into(),
        resources: resources
            .into_iter()
            .map(|(name, any)| Resource {
                name: name.into(),
                version: format!("{name}-{nonce}"),
                resource: Some(any),
                ..Resource::default()
            })
            .collect(),
        removed_resources: removed.iter().map(|s| (*s).to_owned()).collect(),
        ..DeltaDiscoveryResponse::default()
    }
}

/// Validates `resp` on the coalescer's state and records it, as the client does.
fn receive<P: Protocol>(c: &mut Coalescer<P>, resp: &P::Resp)
where
    P::Resp: Clone,
{
    let step = Step::of(&*c.state(), resp, &base());
    let id = (P::type_url(resp), P::nonce(resp));
    c.take(step, id, Some(resp.clone()), None);
}

/// Applies what waits, as the client does when the interval passed, and returns
/// the answers that follow.
fn apply<P: Protocol>(c: &mut Coalescer<P>) -> Vec<Answer<P>> {
    let (seq, state) = c.to_apply();
    c.applied_ok(seq, state);
    c.ready()
}

/// The live ports of cluster `name`.
fn ports(state: &AdsState, name: &str) -> Vec<u16> {
    state
        .endpoints
        .get(name)
        .map(|eps| eps.iter().map(|e| e.address().port()).collect())
        .unwrap_or_default()
}

/// The type, nonce and (for a NACK) error of each request.
fn summary<P: Protocol>(
    answers: &[Answer<P>],
    nack: impl Fn(&P::Req) -> Option<String>,
) -> Vec<(String, String, Option<String>)> {
    answers
        .iter()
        .flat_map(|a| a.reqs.iter().map(move |r| (a, r)))
        .map(|(a, r)| (a.type_url.clone(), a.nonce.clone(), nack(r)))
        .collect()
}

fn sotw_nack(r: &DiscoveryRequest) -> Option<String> {
    r.error_detail.as_ref().map(|e| e.message.clone())
}

fn delta_nack(r: &DeltaDiscoveryRequest) -> Option<String> {
    r.error_detail.as_ref().map(|e| e.message.clone())
}

/// A state of the world with cluster `a` accepted and live.
fn sotw_with_cluster() -> Coalescer<AdsState> {
    let mut state = AdsState::default();
    state.open(Node::default());
    let mut c = Coalescer::new(Arc::new(state));
    receive(&mut c, &sotw(CLUSTER_TYPE, "c1", vec![cluster_any("a")]));
    assert!(c.dirty());
    let answers = apply(&mut c);
    // The EDS subscription, then the ACK.
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].reqs.len(), 2);
    assert_eq!(answers[0].reqs[0].resource_names, ["a"]);
    assert!(!c.dirty());
    c
}

#[test]
fn sotw_burst_goes_live_once_with_the_newest_and_answers_every_nonce() {
    let mut c = sotw_with_cluster();
    for (i, port) in [(1, 8001), (2, 8002), (3, 8003)] {
        receive(
            &mut c,
            &sotw(
                ENDPOINT_TYPE,
                &format!("e{i}"),
                vec![assignment_any("a", &[port])],
            ),
        );
    }
    // Nothing is answered before the state is live.
    assert!(c.ready().is_empty());
    assert_eq!(ports(c.applied().ads(), "a"), Vec::<u16>::new());
    assert_eq!(ports(c.state().ads(), "a"), [8003]);

    let answers = apply(&mut c);
    assert_eq!(ports(c.applied().ads(), "a"), [8003]);
    let acks = summary(&answers, sotw_nack);
    assert_eq!(
        acks,
        ["e1", "e2", "e3"].map(|n| (ENDPOINT_TYPE.to_owned(), n.to_owned(), None))
    );
    // Each ACK carries its response's version and nonce.
    assert_eq!(answers[2].reqs[0].version_info, "v-e3");
    assert_eq!(answers[2].reqs[0].response_nonce, "e3");
    let coalesced: Vec<bool> = answers.iter().map(|a| a.coalesced).collect();
    assert_eq!(coalesced, [true, true, false]);
    assert!(c.ready().is_empty());
}

#[test]
fn sotw_nack_inside_a_burst_names_the_field_and_leaves_the_rest() {
    let mut c = sotw_with_cluster();
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e1", vec![assignment_any("a", &[8001])]),
    );
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e2", vec![assignment_any("a", &[0])]),
    );
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e3", vec![assignment_any("a", &[8003])]),
    );
    // The refused response did not change the validated state: e3 applies on e1.
    assert_eq!(ports(c.state().ads(), "a"), [8003]);

    let answers = apply(&mut c);
    let got = summary(&answers, sotw_nack);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (ENDPOINT_TYPE.into(), "e1".into(), None));
    assert_eq!(got[2], (ENDPOINT_TYPE.into(), "e3".into(), None));
    let (ty, nonce, error) = &got[1];
    assert_eq!((ty.as_str(), nonce.as_str()), (ENDPOINT_TYPE, "e2"));
    let error = error.as_deref().unwrap_or_default();
    assert!(error.contains("cluster_load_assignment \"a\""), "{error}");
    assert!(error.contains("port_value"), "{error}");
    // The NACK reports the version accepted before it (e1's), in order.
    assert_eq!(answers[1].reqs[0].version_info, "v-e1");
    assert_eq!(ports(c.applied().ads(), "a"), [8003]);
    assert_eq!(c.applied().eds.version, "v-e3");
    // e1 went live with e3, the newest of its type.
    assert!(answers[0].coalesced);
    assert!(!answers[2].coalesced);
}

#[test]
fn sotw_nack_with_nothing_waiting_goes_at_once() {
    let mut c = sotw_with_cluster();
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e1", vec![assignment_any("a", &[0])]),
    );
    assert!(!c.dirty());
    let answers = c.ready();
    assert_eq!(answers.len(), 1);
    assert!(matches!(answers[0].verdict, Verdict::Refused(_)));
}

/// Cluster `a` live on 8001, then e2 (8002), e3 (refused), e4 (8004) waiting.
fn waiting_burst(budget: usize) -> Coalescer<AdsState> {
    let mut c = sotw_with_cluster().with_replay_budget(budget);
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e1", vec![assignment_any("a", &[8001])]),
    );
    let answers = apply(&mut c);
    assert_eq!(answers.len(), 1);
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e2", vec![assignment_any("a", &[8002])]),
    );
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e3", vec![assignment_any("a", &[0])]),
    );
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e4", vec![assignment_any("a", &[8004])]),
    );
    c
}

#[test]
fn a_refused_swap_gives_back_what_waited_to_replay_one_at_a_time() {
    let mut c = waiting_burst(REPLAY_BUDGET_BYTES);
    let refusal = Refusal::new("cluster \"a\"", "lb", "refused by the server");
    let replay = c.apply_failed(&refusal);
    let nonces: Vec<&str> = replay.iter().map(|(r, _)| r.nonce.as_str()).collect();
    assert_eq!(nonces, ["e2", "e3", "e4"]);
    // Back on the live state, nothing waiting, nothing answered yet.
    assert!(!c.dirty());
    assert_eq!(ports(c.state().ads(), "a"), [8001]);
    assert!(c.ready().is_empty());
    // Replayed one at a time, each is answered on its own.
    for (resp, _) in &replay {
        receive(&mut c, resp);
        let answers = apply(&mut c);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].nonce, resp.nonce);
    }
    assert_eq!(ports(c.applied().ads(), "a"), [8004]);
}

#[test]
fn a_refused_swap_nacks_what_waited_when_it_cannot_replay() {
    // A budget too small to keep the responses: no replay.
    let mut c = waiting_burst(0);
    let refusal = Refusal::new("cluster \"a\"", "lb", "refused by the server");
    assert!(c.apply_failed(&refusal).is_empty());
    assert!(!c.dirty());
    assert_eq!(ports(c.state().ads(), "a"), [8001]);
    let got = summary(&c.ready(), sotw_nack);
    let errors: Vec<_> = got
        .iter()
        .map(|(_, n, e)| (n.as_str(), e.clone().unwrap_or_default()))
        .collect();
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0],
        ("e2", "cluster \"a\": lb: refused by the server".to_owned())
    );
    assert!(errors[1].1.contains("port_value"), "{errors:?}");
    assert_eq!(errors[2].0, "e4");
    assert_eq!(errors[2].1, errors[0].1);
    // The next response validates on the live state again.
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e5", vec![assignment_any("a", &[8005])]),
    );
    let answers = apply(&mut c);
    assert_eq!(ports(c.applied().ads(), "a"), [8005]);
    assert_eq!(answers[0].reqs[0].version_info, "v-e5");
}

#[test]
fn a_refused_swap_of_one_response_nacks_it() {
    let mut c = sotw_with_cluster();
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e1", vec![assignment_any("a", &[8001])]),
    );
    let refusal = Refusal::new("cluster \"a\"", "lb", "refused by the server");
    assert!(c.apply_failed(&refusal).is_empty());
    let got = summary(&c.ready(), sotw_nack);
    assert_eq!(
        got,
        [(
            ENDPOINT_TYPE.to_owned(),
            "e1".to_owned(),
            Some(refusal.to_string())
        )]
    );
    assert_eq!(c.applied().eds.version, "");
}

#[test]
fn delta_burst_unites_updates_and_removals_in_arrival_order() {
    let state = DeltaState::new(false);
    state.open(Node::default());
    let mut c = Coalescer::new(Arc::new(state));
    let cds = delta(
        CLUSTER_TYPE,
        "c1",
        vec![
            ("a", cluster_any("a")),
            ("b", cluster_any("b")),
            ("c", cluster_any("c")),
        ],
        &[],
    );
    receive(&mut c, &cds);
    let answers = apply(&mut c);
    assert_eq!(answers[0].reqs[0].resource_names_subscribe, ["a", "b", "c"]);

    let bursts = [
        delta(
            ENDPOINT_TYPE,
            "e1",
            vec![
                ("a", assignment_any("a", &[8001])),
                ("b", assignment_any("b", &[8011])),
            ],
            &[],
        ),
        delta(
            ENDPOINT_TYPE,
            "e2",
            vec![("c", assignment_any("c", &[0]))],
            &[],
        ),
        delta(
            ENDPOINT_TYPE,
            "e3",
            vec![("c", assignment_any("c", &[8021]))],
            &["b"],
        ),
        delta(
            ENDPOINT_TYPE,
            "e4",
            vec![("a", assignment_any("a", &[8002]))],
            &[],
        ),
    ];
    for resp in &bursts {
        receive(&mut c, resp);
    }
    let answers = apply(&mut c);
    let live = c.applied().ads();
    assert_eq!(ports(live, "a"), [8002]);
    assert_eq!(ports(live, "b"), Vec::<u16>::new());
    assert!(!live.endpoints.contains_key("b"));
    assert_eq!(ports(live, "c"), [8021]);
    let got = summary(&answers, delta_nack);
    let nonces: Vec<_> = got
        .iter()
        .map(|(_, n, e)| (n.as_str(), e.is_some()))
        .collect();
    assert_eq!(
        nonces,
        [("e1", false), ("e2", true), ("e3", false), ("e4", false)]
    );
    let error = got[1].2.clone().unwrap_or_default();
    assert!(error.contains("port_value"), "{error}");
    // What a reconnection resumes from: the versions of the resources live.
    let versions = c.applied().versions(ENDPOINT_TYPE);
    assert_eq!(versions.get("a").map(String::as_str), Some("a-e4"));
    assert_eq!(versions.get("c").map(String::as_str), Some("c-e3"));
    assert!(!versions.contains_key("b"));
}

#[test]
fn reads_stop_when_too_many_answers_wait() {
    let mut c = sotw_with_cluster();
    let mut n = 0;
    while c.has_room() {
        n += 1;
        receive(
            &mut c,
            &sotw(
                ENDPOINT_TYPE,
                &format!("e{n}"),
                vec![assignment_any("a", &[8001])],
            ),
        );
    }
    assert_eq!(n, MAX_WAITING_ANSWERS);
    let answers = apply(&mut c);
    assert_eq!(answers.len(), MAX_WAITING_ANSWERS);
    assert_eq!(answers.iter().filter(|a| !a.coalesced).count(), 1);
    assert!(c.has_room());
}

#[test]
fn a_session_ends_on_the_live_state() {
    let mut c = sotw_with_cluster();
    receive(
        &mut c,
        &sotw(ENDPOINT_TYPE, "e1", vec![assignment_any("a", &[8001])]),
    );
    let live = c.into_applied();
    assert_eq!(ports(live.ads(), "a"), Vec::<u16>::new());
    assert_eq!(live.eds.version, "");
}
