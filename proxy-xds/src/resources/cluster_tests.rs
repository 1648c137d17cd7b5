use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{
                    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, RingHashLbConfig,
                },
                Cluster,
            },
            core::v3::{
                config_source::ConfigSourceSpecifier, ApiConfigSource, ConfigSource,
                Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions, TransportSocket,
            },
        },
        extensions::upstreams::http::v3::{
            http_protocol_options::{
                explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
            },
            HttpProtocolOptions,
        },
    },
    google::protobuf::{Duration as PbDuration, UInt32Value},
};
use proxy_core::config::UpstreamProtocol;

use super::*;

fn named(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        ..Cluster::default()
    }
}

fn refused(c: &Cluster) -> String {
    cluster(c).expect_err("refused").to_string()
}

#[test]
fn policies_map_onto_the_balancers() {
    let mut c = named("a");
    assert_eq!(cluster(&c).unwrap().config.lb.typed, "round_robin");
    assert_eq!(
        cluster(&c).unwrap().config.connect_timeout,
        Duration::from_secs(5)
    );
    for (policy, name) in [
        (LbPolicy::Random, "random"),
        (LbPolicy::LeastRequest, "least_request"),
        (LbPolicy::RingHash, "ring_hash"),
        (LbPolicy::Maglev, "maglev"),
    ] {
        c.lb_policy = policy as i32;
        assert_eq!(cluster(&c).unwrap().config.lb.typed, name, "{policy:?}");
    }
    c.lb_policy = LbPolicy::ClusterProvided as i32;
    assert_eq!(
        refused(&c),
        "cluster \"a\": lb_policy: CLUSTER_PROVIDED is not supported"
    );
    c.lb_policy = 99;
    assert!(refused(&c).contains("lb_policy: unknown policy 99"));

    c.lb_policy = LbPolicy::RoundRobin as i32;
    c.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig::default()));
    assert_eq!(
        refused(&c),
        "cluster \"a\": ring_hash_lb_config: given with lb_policy ROUND_ROBIN"
    );
    c.lb_policy = LbPolicy::RingHash as i32;
    c.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
        hash_function: 1,
        ..Default::default()
    }));
    assert!(refused(&c).contains("ring_hash_lb_config.hash_function"));
}

#[test]
fn static_and_eds_discovery() {
    let mut c = named("a");
    c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
    assert_eq!(cluster(&c).unwrap().eds_service.as_deref(), Some("a"));
    c.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: None,
        service_name: "svc".into(),
    });
    assert_eq!(cluster(&c).unwrap().eds_service.as_deref(), Some("svc"));
    c.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource::default(),
            )),
            ..ConfigSource::default()
        }),
        service_name: String::new(),
    });
    assert!(refused(&c).contains("eds_cluster_config.eds_config.config_source_specifier: only ads"));
    c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32));
    assert!(refused(&c).contains("type: STRICT_DNS is not supported"));
}

#[test]
fn fields_that_change_behaviour_are_refused_by_name() {
    let mut c = named("a");
    c.transport_socket = Some(TransportSocket::default());
    assert_eq!(
        refused(&c),
        "cluster \"a\": transport_socket.typed_config: missing"
    );
    let mut c = named("a");
    c.health_checks = vec![Default::default()];
    assert!(refused(&c).contains(": health_checks[0].timeout: missing (required)"));
    let mut c = named("a");
    c.connect_timeout = Some(PbDuration {
        seconds: 0,
        nanos: 0,
    });
    assert!(refused(&c).contains("connect_timeout: must be more than zero"));
    assert_eq!(cluster(&named("")).unwrap_err().path, "name");
    // Observability-only fields are taken.
    let mut c = named("a");
    c.alt_stat_name = "x".into();
    assert!(cluster(&c).is_ok());
}

#[test]
fn upstream_protocol_from_http_options() {
    let h2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..HttpProtocolOptions::default()
    };
    let mut c = named("a");
    c.typed_extension_protocol_options
        .insert(HTTP_OPTIONS_KEY.into(), envoy_types::util::pack_any(h2));
    assert_eq!(
        cluster(&c).unwrap().config.protocol,
        UpstreamProtocol::Http2
    );
    let auto = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::AutoConfig(Default::default())),
        ..HttpProtocolOptions::default()
    };
    c.typed_extension_protocol_options
        .insert(HTTP_OPTIONS_KEY.into(), envoy_types::util::pack_any(auto));
    assert!(refused(&c).contains("auto_config: not supported"));
}

#[test]
fn max_requests_per_connection_bounds_the_pool() {
    let with = |n: u32| HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpOptions {
            max_requests_per_connection: Some(UInt32Value { value: n }),
            ..CommonHttpOptions::default()
        }),
        ..HttpProtocolOptions::default()
    };
    let mut c = named("a");
    let bound = |c: &Cluster| cluster(c).unwrap().config.pool.max_requests_per_connection;
    assert_eq!(bound(&c), None);
    c.typed_extension_protocol_options.insert(
        HTTP_OPTIONS_KEY.into(),
        envoy_types::util::pack_any(with(10)),
    );
    assert_eq!(bound(&c).map(|n| n.get()), Some(10));
    // Zero is Envoy's "no limit".
    c.typed_extension_protocol_options.insert(
        HTTP_OPTIONS_KEY.into(),
        envoy_types::util::pack_any(with(0)),
    );
    assert_eq!(bound(&c), None);
    // The cluster's deprecated field counts when the HTTP options do not set it.
    #[allow(deprecated)]
    {
        c.max_requests_per_connection = Some(UInt32Value { value: 3 });
    }
    assert_eq!(bound(&c), None);
    c.typed_extension_protocol_options.clear();
    assert_eq!(bound(&c).map(|n| n.get()), Some(3));
}
