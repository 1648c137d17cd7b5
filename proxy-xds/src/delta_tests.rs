use envoy_types::pb::envoy::config::{
    cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType},
    endpoint::v3::LocalityLbEndpoints,
};
use prost::Message;

use super::*;

fn base() -> Config {
    proxy_core::config::from_yaml(
        "listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {}, cluster: app}]}]}]\nclusters: [{name: other, endpoints: []}]",
    )
    .unwrap()
}

fn resource(name: &str, version: &str, any: Any) -> Resource {
    Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(any),
        ..Resource::default()
    }
}

fn cluster(name: &str) -> Resource {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        ..Cluster::default()
    };
    let any = Any {
        type_url: CLUSTER_TYPE.into(),
        value: c.encode_to_vec(),
    };
    resource(name, &format!("{name}-v1"), any)
}

fn assignment(name: &str, version: &str) -> Resource {
    let cla = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints::default()],
        ..ClusterLoadAssignment::default()
    };
    let any = Any {
        type_url: ENDPOINT_TYPE.into(),
        value: cla.encode_to_vec(),
    };
    resource(name, version, any)
}

fn delta(
    type_url: &str,
    nonce: &str,
    resources: Vec<Resource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        system_version_info: format!("sys-{nonce}"),
        nonce: nonce.into(),
        resources,
        removed_resources: removed.iter().map(|s| (*s).to_owned()).collect(),
        ..DeltaDiscoveryResponse::default()
    }
}

/// Prepares and accepts `resp`, returning the requests that follow.
fn take(s: &mut DeltaState, resp: &DeltaDiscoveryResponse) -> Vec<DeltaDiscoveryRequest> {
    let next = s.prepare(resp, &base()).unwrap();
    s.accept(next, resp)
}

#[test]
fn subscribe_unsubscribe_and_ack_by_nonce() {
    let mut s = DeltaState::new(false);
    let open = s.open(Node::default());
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].type_url, CLUSTER_TYPE);
    assert!(open[0].node.is_some());
    assert!(open[0].resource_names_subscribe.is_empty(), "wildcard");
    assert!(open[0].initial_resource_versions.is_empty());

    // Two EDS clusters: EDS is subscribed to both, before the ACK.
    let out = take(
        &mut s,
        &delta(
            CLUSTER_TYPE,
            "c1",
            vec![cluster("app"), cluster("web")],
            &[],
        ),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].type_url, ENDPOINT_TYPE);
    assert_eq!(out[0].resource_names_subscribe, ["app", "web"]);
    assert!(out[0].resource_names_unsubscribe.is_empty());
    assert_eq!(
        (out[1].type_url.as_str(), out[1].response_nonce.as_str()),
        (CLUSTER_TYPE, "c1")
    );
    assert!(out[1].error_detail.is_none());
    assert!(out[1].resource_names_subscribe.is_empty());
    assert_eq!(s.ads.cds.version, "sys-c1", "system_version_info is kept");

    // Endpoints of both, then `web` removed by CDS: EDS unsubscribes it and its
    // endpoints go; a delta carrying only `app`'s update keeps `web`'s until then.
    take(
        &mut s,
        &delta(
            ENDPOINT_TYPE,
            "e1",
            vec![assignment("app", "1"), assignment("web", "1")],
            &[],
        ),
    );
    take(
        &mut s,
        &delta(ENDPOINT_TYPE, "e2", vec![assignment("app", "2")], &[]),
    );
    assert_eq!(
        s.versions(ENDPOINT_TYPE),
        BTreeMap::from([("app".into(), "2".into()), ("web".into(), "1".into())])
    );
    let out = take(&mut s, &delta(CLUSTER_TYPE, "c2", vec![], &["web"]));
    assert_eq!(out[0].resource_names_unsubscribe, ["web"]);
    assert!(out[0].resource_names_subscribe.is_empty());
    assert_eq!(out[1].response_nonce, "c2");
    assert_eq!(s.ads.clusters.keys().collect::<Vec<_>>(), ["app"]);
    assert_eq!(s.ads.endpoints.keys().collect::<Vec<_>>(), ["app"]);
    assert_eq!(s.versions(ENDPOINT_TYPE).len(), 1);

    // Endpoints not asked for are ignored; removed ones go.
    take(
        &mut s,
        &delta(ENDPOINT_TYPE, "e3", vec![assignment("nobody", "1")], &[]),
    );
    assert!(!s.ads.endpoints.contains_key("nobody"));
    take(&mut s, &delta(ENDPOINT_TYPE, "e4", vec![], &["app"]));
    assert!(s.ads.endpoints.is_empty());
    let config = s.ads.config(&base());
    let app = config.clusters.iter().find(|c| c.name == "app").unwrap();
    assert!(app.endpoints.is_empty());
}

#[test]
fn a_new_stream_sends_the_versions_held() {
    let mut s = DeltaState::new(true);
    take(
        &mut s,
        &delta(CLUSTER_TYPE, "c1", vec![cluster("app")], &[]),
    );
    take(
        &mut s,
        &delta(ENDPOINT_TYPE, "e1", vec![assignment("app", "7")], &[]),
    );
    let open = s.open(Node::default());
    let types: Vec<_> = open.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE]);
    assert!(open[0].node.is_some() && open[1].node.is_none());
    assert_eq!(
        open[0].initial_resource_versions,
        [("app".to_owned(), "app-v1".to_owned())].into()
    );
    assert_eq!(open[1].resource_names_subscribe, ["app"]);
    assert_eq!(
        open[1].initial_resource_versions,
        [("app".to_owned(), "7".to_owned())].into()
    );
    assert!(open.iter().all(|r| r.response_nonce.is_empty()));
}

#[test]
fn a_refused_response_changes_nothing_and_is_nacked_by_nonce() {
    let mut s = DeltaState::new(false);
    take(
        &mut s,
        &delta(CLUSTER_TYPE, "c1", vec![cluster("app")], &[]),
    );
    let before = s.clone();
    let nack_of = |s: &DeltaState, resp: &DeltaDiscoveryResponse| {
        let refusal = s.prepare(resp, &base()).unwrap_err();
        let nack = s.reject(resp, &refusal);
        assert_eq!(nack.response_nonce, resp.nonce);
        let detail = nack.error_detail.unwrap();
        assert_eq!(detail.code, INVALID_ARGUMENT);
        detail.message
    };

    // A cluster with a field that would change behaviour: named.
    let mut bad = Cluster {
        name: "web".into(),
        ..Cluster::default()
    };
    bad.outlier_detection = Some(
        envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
            split_external_local_origin_errors: true,
            ..Default::default()
        },
    );
    let any = Any {
        type_url: CLUSTER_TYPE.into(),
        value: bad.encode_to_vec(),
    };
    let resp = delta(CLUSTER_TYPE, "c2", vec![resource("web", "1", any)], &[]);
    assert_eq!(
        nack_of(&s, &resp),
        "cluster \"web\": outlier_detection.split_external_local_origin_errors: not supported: \
         local-origin failures count as 5xx here (Envoy's default)"
    );

    // The wrapper's name must be the resource's own.
    let mut renamed = cluster("app");
    renamed.name = "other-name".into();
    let resp = delta(CLUSTER_TYPE, "c3", vec![renamed], &[]);
    assert!(nack_of(&s, &resp).starts_with("resources[0]: name: \"other-name\" differs"));

    for (resp, want) in [
        (
            delta(CLUSTER_TYPE, "c4", vec![cluster("a"), cluster("a")], &[]),
            "resources[1]: name: \"a\" appears twice in the response",
        ),
        (
            delta(CLUSTER_TYPE, "c5", vec![cluster("a")], &["a"]),
            "removed_resources[0]: \"a\" is also among the resources of the response",
        ),
        (
            delta(CLUSTER_TYPE, "c6", vec![cluster("other")], &[]),
            "cluster \"other\": name: a static cluster has this name",
        ),
        (
            delta(LISTENER_TYPE, "l1", vec![], &[]),
            "type_url: \"type.googleapis.com/envoy.config.listener.v3.Listener\" is not subscribed (CDS and EDS are)",
        ),
        (
            delta(CLUSTER_TYPE, "c7", vec![Resource { name: "x".into(), ..Resource::default() }], &[]),
            "resources[0]: resource: missing (a heartbeat, which is not supported)",
        ),
        (
            delta(CLUSTER_TYPE, "c8", vec![assignment("app", "1")], &[]),
            "resources[0]: type_url: \"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\" in a response of type \"type.googleapis.com/envoy.config.cluster.v3.Cluster\"",
        ),
    ] {
        assert_eq!(nack_of(&s, &resp), want);
    }
    let mut ttl = cluster("b");
    ttl.ttl = Some(Default::default());
    let resp = delta(CLUSTER_TYPE, "c9", vec![ttl], &[]);
    assert!(nack_of(&s, &resp).starts_with("resources[0]: ttl: not supported"));
    assert_eq!(s, before, "nothing changed");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    /// One response of a random sequence: its type (0 CDS, 1 EDS, 2 an unknown
    /// type), names updated and removed from a small set, and whether one resource
    /// is garbage or misnamed.
    fn response(
        step: usize,
        kind: u8,
        updated: &[usize],
        removed: &[usize],
        spoil: u8,
    ) -> DeltaDiscoveryResponse {
        const NAMES: [&str; 3] = ["a", "b", "c"];
        let nonce = format!("n{step}");
        let removed: Vec<&str> = removed.iter().map(|i| NAMES[i % 3]).collect();
        let mut resources: Vec<Resource> = updated
            .iter()
            .map(|i| match kind {
                0 => cluster(NAMES[i % 3]),
                _ => assignment(NAMES[i % 3], &nonce),
            })
            .collect();
        if let Some(first) = resources.first_mut() {
            match spoil {
                1 => {
                    if let Some(any) = &mut first.resource {
                        any.value = vec![0xff, 0xff];
                    }
                }
                2 => first.name = "other-name".into(),
                _ => {}
            }
        }
        let type_url = match kind {
            0 => CLUSTER_TYPE,
            1 => ENDPOINT_TYPE,
            _ => "type.googleapis.com/example.Unknown",
        };
        delta(type_url, &nonce, resources, &removed)
    }

    proptest! {
        /// Whatever sequence of responses comes, nothing panics, a refused one
        /// changes nothing, and the held resources are the translated ones: every
        /// cluster held is translated, every EDS resource held is subscribed and
        /// translated.
        #[test]
        fn random_delta_sequences_keep_the_held_set_consistent(
            steps in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(0usize..3, 0..3),
                 proptest::collection::vec(0usize..3, 0..2), 0u8..6),
                1..12,
            )
        ) {
            let mut s = DeltaState::new(false);
            for (i, (kind, updated, removed, spoil)) in steps.iter().enumerate() {
                let resp = response(i, *kind, updated, removed, *spoil);
                match s.prepare(&resp, &base()) {
                    Ok(next) => {
                        let out = s.accept(next, &resp);
                        prop_assert_eq!(out.last().map(|r| r.response_nonce.as_str()), Some(resp.nonce.as_str()));
                    }
                    Err(refusal) => {
                        let before = s.clone();
                        let nack = s.reject(&resp, &refusal);
                        prop_assert!(nack.error_detail.is_some());
                        prop_assert_eq!(&s, &before);
                    }
                }
                let clusters: BTreeSet<String> = s.ads.clusters.keys().cloned().collect();
                let held_clusters: BTreeSet<String> = s.versions(CLUSTER_TYPE).into_keys().collect();
                prop_assert_eq!(&held_clusters, &clusters);
                prop_assert_eq!(&s.ads.eds_names, &clusters);
                let endpoints: BTreeSet<String> = s.ads.endpoints.keys().cloned().collect();
                let held_endpoints: BTreeSet<String> = s.versions(ENDPOINT_TYPE).into_keys().collect();
                prop_assert_eq!(&held_endpoints, &endpoints);
                prop_assert!(endpoints.is_subset(&s.ads.eds_names));
            }
        }
    }
}

#[test]
fn secrets_named_by_clusters_are_subscribed_and_the_cluster_waits_for_them() {
    use envoy_types::pb::envoy::{
        config::core::v3::{transport_socket, DataSource, TransportSocket},
        extensions::transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, secret, CertificateValidationContext,
            CommonTlsContext, SdsSecretConfig, Secret, UpstreamTlsContext,
        },
    };
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                SdsSecretConfig {
                    name: "ca".into(),
                    sds_config: None,
                },
            )),
            ..CommonTlsContext::default()
        }),
        ..UpstreamTlsContext::default()
    };
    let c = Cluster {
        name: "app".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        transport_socket: Some(TransportSocket {
            name: "tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".into(),
                value: ctx.encode_to_vec(),
            })),
        }),
        ..Cluster::default()
    };
    let any = Any {
        type_url: CLUSTER_TYPE.into(),
        value: c.encode_to_vec(),
    };
    let mut s = DeltaState::new(false);
    let out = take(
        &mut s,
        &delta(CLUSTER_TYPE, "c1", vec![resource("app", "1", any)], &[]),
    );
    let types: Vec<_> = out.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [ENDPOINT_TYPE, SECRET_TYPE, CLUSTER_TYPE]);
    assert_eq!(out[1].resource_names_subscribe, ["ca"]);
    let app = |s: &DeltaState| {
        let config = s.ads.config(&base());
        config
            .clusters
            .into_iter()
            .find(|c| c.name == "app")
            .unwrap()
    };
    assert!(
        app(&s).transport.is_none(),
        "a placeholder until the secret"
    );

    let ca = Secret {
        name: "ca".into(),
        r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(DataSource {
                specifier: Some(
                    envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                        "PEM".into(),
                    ),
                ),
                ..DataSource::default()
            }),
            ..CertificateValidationContext::default()
        })),
    };
    let any = Any {
        type_url: SECRET_TYPE.into(),
        value: ca.encode_to_vec(),
    };
    take(
        &mut s,
        &delta(SECRET_TYPE, "s1", vec![resource("ca", "1", any)], &[]),
    );
    assert_eq!(app(&s).transport.map(|t| t.typed), Some("tls".to_owned()));

    // The cluster goes: its secret is unsubscribed and dropped.
    let out = take(&mut s, &delta(CLUSTER_TYPE, "c2", vec![], &["app"]));
    let unsub: Vec<_> = out
        .iter()
        .filter(|r| r.type_url == SECRET_TYPE)
        .map(|r| r.resource_names_unsubscribe.clone())
        .collect();
    assert_eq!(unsub, [vec!["ca".to_owned()]]);
    assert!(s.ads.secrets.is_empty() && s.versions(SECRET_TYPE).is_empty());
}
