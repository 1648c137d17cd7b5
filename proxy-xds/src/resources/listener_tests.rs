use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{Address, Pipe, SocketAddress},
            listener::v3::{Filter, FilterChainMatch, ListenerFilter},
            route::v3::RouteConfiguration,
        },
        extensions::filters::network::http_connection_manager::v3::{
            http_connection_manager::{CodecType, RouteSpecifier},
            http_filter, HttpConnectionManager, HttpFilter, Rds,
        },
    },
    google::protobuf::{Any, Duration as PbDuration},
};
use prost::Message;
use proxy_core::config::ListenerProtocol;

use super::*;

fn hcm_any(h: &HttpConnectionManager) -> Any {
    Any {
        type_url: HCM_TYPE.into(),
        value: h.encode_to_vec(),
    }
}

fn router() -> HttpFilter {
    HttpFilter {
        name: super::super::ROUTER_NAME.into(),
        ..HttpFilter::default()
    }
}

fn hcm(filters: Vec<HttpFilter>) -> HttpConnectionManager {
    HttpConnectionManager {
        codec_type: CodecType::Http1 as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: "r".into(),
        })),
        http_filters: filters,
        stream_idle_timeout: Some(PbDuration {
            seconds: 0,
            nanos: 0,
        }),
        ..HttpConnectionManager::default()
    }
}

fn with(h: &HttpConnectionManager) -> Listener {
    Listener {
        name: "web".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(8080)),
                ..SocketAddress::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_NAME.into(),
                config_type: Some(ConfigType::TypedConfig(hcm_any(h))),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

fn refusal(l: &Listener) -> String {
    listener(l)
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn a_listener_with_the_connection_manager_maps() {
    let x = listener(&with(&hcm(vec![router()]))).unwrap();
    assert_eq!(x.config.address.to_string(), "127.0.0.1:8080");
    assert_eq!(x.config.protocol, ListenerProtocol::Http1);
    assert_eq!(x.routes, RouteSource::Rds("r".into()));
    assert_eq!(
        x.config.limits.stream_idle_timeout,
        std::time::Duration::from_secs(86_400),
        "0 is no timeout"
    );
    assert!(!x.config.xff, "use_remote_address is false");

    let mut inline = hcm(vec![router()]);
    inline.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfiguration {
        name: "inline".into(),
        ..RouteConfiguration::default()
    }));
    let x = listener(&with(&inline)).unwrap();
    assert!(matches!(x.routes, RouteSource::Inline(_)));

    let mut pipe = with(&hcm(vec![router()]));
    pipe.address = Some(Address {
        address: Some(address::Address::Pipe(Pipe {
            path: "/tmp/web.sock".into(),
            mode: 0,
        })),
    });
    assert_eq!(
        listener(&pipe).unwrap().config.address.to_string(),
        "unix:/tmp/web.sock"
    );
}

#[test]
fn the_via_of_the_connection_manager_names_the_proxy() {
    assert_eq!(
        listener(&with(&hcm(vec![router()]))).unwrap().config.via,
        None
    );
    for (via, pseudonym) in [("edge-1", "edge-1"), (" 1.1 sidecar.pay ", "sidecar.pay")] {
        let mut h = hcm(vec![router()]);
        h.via = via.into();
        let x = listener(&with(&h)).unwrap();
        assert_eq!(x.config.via.as_deref(), Some(pseudonym), "{via:?}");
    }
    for bad in ["1.1 edge 1", "1.1 edge,1", "HTTP/1.1 (edge)x"] {
        let mut h = hcm(vec![router()]);
        h.via = bad.into();
        assert!(refusal(&with(&h)).contains("typed_config.via: "), "{bad:?}");
    }
}

#[test]
fn filters_and_fields_not_implemented_are_refused_by_name() {
    let cors = HttpFilter {
        name: "envoy.filters.http.cors".into(),
        ..HttpFilter::default()
    };
    assert_eq!(
        refusal(&with(&hcm(vec![cors.clone(), router()]))),
        "listener \"web\": filter_chains[0].filters[0].typed_config.http_filters[0].typed_config: \"envoy.filters.http.cors\": a typed_config is required"
    );
    let typed_cors = HttpFilter {
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors".into(),
            value: vec![],
        })),
        ..cors.clone()
    };
    assert_eq!(
        refusal(&with(&hcm(vec![typed_cors, router()]))),
        "listener \"web\": filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.type_url: \"type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\" is not a filter this proxy implements"
    );
    let optional = HttpFilter {
        is_optional: true,
        ..cors
    };
    assert_eq!(refusal(&with(&hcm(vec![optional, router()]))), "");
    assert!(refusal(&with(&hcm(vec![])))
        .ends_with("http_filters: envoy.filters.http.router is required"));

    let mut l = with(&hcm(vec![router()]));
    l.listener_filters = vec![ListenerFilter::default()];
    assert_eq!(
        refusal(&l),
        "listener \"web\": listener_filters: not supported: it would change behaviour"
    );

    let mut l = with(&hcm(vec![router()]));
    l.filter_chains[0].filter_chain_match = Some(FilterChainMatch {
        server_names: vec!["a".into()],
        ..FilterChainMatch::default()
    });
    assert!(refusal(&l).contains("filter_chains[0].filter_chain_match: not supported"));

    let mut l = with(&hcm(vec![router()]));
    l.filter_chains[0].filters[0] = Filter {
        name: "envoy.filters.network.echo".into(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo".into(),
            value: vec![],
        })),
    };
    assert!(refusal(&l).contains("\"envoy.filters.network.echo\""));

    let mut h = hcm(vec![router()]);
    h.server_name = "edge".into();
    assert!(refusal(&with(&h))
        .ends_with("typed_config.server_name: not supported: it would change behaviour"));

    let mut l = with(&hcm(vec![router()]));
    if let Some(Address {
        address: Some(address::Address::SocketAddress(s)),
    }) = &mut l.address
    {
        s.address = "web.internal".into();
    }
    assert!(refusal(&l).contains("address.socket_address.address"));
}

fn own(name: &str) -> Any {
    let ts = super::super::typed_struct::TypedStruct {
        type_url: format!("type.googleapis.com/proxy.filters.{name}"),
        value: None,
    };
    Any {
        type_url: super::super::TYPED_STRUCT_TYPE.into(),
        value: ts.encode_to_vec(),
    }
}

fn own_filter(name: &str) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(own(name))),
        ..HttpFilter::default()
    }
}

#[test]
fn http_and_network_filters_keep_their_order_before_the_hcm() {
    let mut l = with(&hcm(vec![
        own_filter("fault"),
        own_filter("mirror"),
        router(),
    ]));
    let chain = &mut l.filter_chains[0];
    chain.filters.insert(
        0,
        Filter {
            name: "limit".into(),
            config_type: Some(ConfigType::TypedConfig(own("connection_limit"))),
        },
    );
    let x = listener(&l).unwrap();
    let names = |v: &[proxy_core::config::TypedConfig]| {
        v.iter().map(|f| f.typed.clone()).collect::<Vec<_>>()
    };
    let typed = x.config.http_filters.iter().map(|f| f.typed.as_str());
    assert_eq!(typed.collect::<Vec<_>>(), ["fault", "mirror"]);
    assert_eq!(names(&x.config.network_filters), ["connection_limit"]);

    l.filter_chains[0].filters[0].config_type = Some(ConfigType::TypedConfig(Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo".into(),
        value: vec![],
    }));
    assert!(
        refusal(&l).starts_with("listener \"web\": filter_chains[0].filters[0].typed_config: \"limit\" (type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo) is not a network filter"),
        "{}",
        refusal(&l)
    );
}

#[test]
fn a_filter_after_the_router_is_refused() {
    assert_eq!(
        refusal(&with(&hcm(vec![router(), own_filter("fault")]))),
        "listener \"web\": filter_chains[0].filters[0].typed_config.http_filters[0]: the router must be the last filter"
    );
    let optional = HttpFilter {
        is_optional: true,
        ..own_filter("fault")
    };
    assert_eq!(refusal(&with(&hcm(vec![router(), optional]))), "");
}

fn filter_of<M: Message + prost::Name>(name: &str, m: &M) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        })),
    }
}

#[test]
fn a_tcp_proxy_ends_a_chain_after_a_connection_limit() {
    use envoy_types::pb::{
        envoy::extensions::filters::network::{
            connection_limit::v3::ConnectionLimit,
            tcp_proxy::v3::{tcp_proxy::ClusterSpecifier, TcpProxy},
        },
        google::protobuf::{UInt32Value, UInt64Value},
    };
    let limit = ConnectionLimit {
        stat_prefix: "db".into(),
        max_connections: Some(UInt64Value { value: 100 }),
        ..Default::default()
    };
    let tcp = TcpProxy {
        stat_prefix: "db".into(),
        cluster_specifier: Some(ClusterSpecifier::Cluster("postgres".into())),
        idle_timeout: Some(PbDuration {
            seconds: 0,
            nanos: 0,
        }),
        max_connect_attempts: Some(UInt32Value { value: 3 }),
        ..Default::default()
    };
    let mut l = with(&hcm(vec![router()]));
    l.filter_chains[0].filters = vec![filter_of("limit", &limit), filter_of("tcp", &tcp)];
    let x = listener(&l).unwrap();
    let filters: Vec<(String, serde_json::Value)> = x
        .config
        .network_filters
        .iter()
        .map(|f| (f.typed.clone(), f.config.as_value().clone()))
        .collect();
    assert_eq!(
        filters,
        [
            (
                "connection_limit".to_owned(),
                serde_json::json!({ "max_connections": 100 })
            ),
            (
                "tcp_proxy".to_owned(),
                serde_json::json!({ "cluster": "postgres", "idle_timeout": "86400000ms", "connect_attempts": 3 })
            ),
        ]
    );
    match &x.routes {
        RouteSource::Inline(r) => {
            assert!(r.virtual_hosts.is_empty());
            assert_eq!(r.clusters.iter().collect::<Vec<_>>(), ["postgres"]);
        }
        other => panic!("{other:?}"),
    }

    let mut delayed = limit.clone();
    delayed.delay = Some(PbDuration {
        seconds: 1,
        nanos: 0,
    });
    l.filter_chains[0].filters[0] = filter_of("limit", &delayed);
    assert!(
        refusal(&l).ends_with("filter_chains[0].filters[0].typed_config.delay: not supported: it would change behaviour"),
        "{}",
        refusal(&l)
    );
    l.filter_chains[0].filters = vec![filter_of("tcp", &tcp), filter_of("limit", &limit)];
    assert!(
        refusal(&l).ends_with(
            "filter_chains[0].filters[0]: a TCP proxy is terminal: it must be the last filter"
        ),
        "{}",
        refusal(&l)
    );
    let mut weighted = tcp.clone();
    weighted.cluster_specifier = Some(ClusterSpecifier::WeightedClusters(Default::default()));
    l.filter_chains[0].filters = vec![filter_of("tcp", &weighted)];
    assert!(
        refusal(&l).ends_with("filter_chains[0].filters[0].typed_config.weighted_clusters: not supported: it would change behaviour"),
        "{}",
        refusal(&l)
    );
}
