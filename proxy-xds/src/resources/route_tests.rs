use envoy_types::pb::{
    envoy::config::{
        core::v3::{HeaderValue, HeaderValueOption},
        route::v3::{
            header_matcher::HeaderMatchSpecifier, route_action::ClusterSpecifier,
            route_match::PathSpecifier, weighted_cluster::ClusterWeight, HeaderMatcher,
            RedirectAction, RouteAction, RouteMatch, WeightedCluster,
        },
    },
    google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value},
};
use proxy_core::{
    config::{PathMatchConfig, RetryOn},
    matcher::StringMatch,
};

use super::*;
use crate::resources::route_configuration;

fn to(cluster: &str) -> Action {
    Action::Route(RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
        ..RouteAction::default()
    })
}

fn route(path: PathSpecifier, action: Action) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(path),
            ..RouteMatch::default()
        }),
        action: Some(action),
        ..Route::default()
    }
}

fn config(routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["web".into(), "web:8080".into()],
            routes,
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

fn refusal(rc: &RouteConfiguration) -> String {
    route_configuration(rc)
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn matches_and_defaults_map_one_to_one() {
    let mut r = route(PathSpecifier::Prefix("/api".into()), to("api"));
    if let Some(m) = &mut r.r#match {
        m.headers = vec![
            HeaderMatcher {
                name: ":method".into(),
                #[allow(deprecated)]
                header_match_specifier: Some(HeaderMatchSpecifier::ExactMatch("GET".into())),
                ..HeaderMatcher::default()
            },
            HeaderMatcher {
                name: "x-env".into(),
                #[allow(deprecated)]
                header_match_specifier: Some(HeaderMatchSpecifier::PrefixMatch("prod".into())),
                invert_match: true,
                ..HeaderMatcher::default()
            },
        ];
    }
    let rc = config(vec![
        r,
        route(PathSpecifier::Path("/exact".into()), to("b")),
        route(PathSpecifier::Prefix(String::new()), to("c")),
    ]);
    let x = route_configuration(&rc).unwrap();
    let vh = &x.virtual_hosts[0];
    assert_eq!(
        vh.domains,
        ["web"],
        "the port is dropped, the duplicate kept once"
    );
    let api = &vh.routes[0];
    assert_eq!(
        api.matcher.path,
        Some(PathMatchConfig::Prefix("/api".into()))
    );
    assert_eq!(api.matcher.methods, ["GET"]);
    // Inverted value: the header must be present and not match.
    assert_eq!(api.matcher.headers.len(), 2);
    assert!(!api.matcher.headers[0].invert && api.matcher.headers[0].value.is_none());
    assert!(api.matcher.headers[1].invert);
    assert_eq!(
        api.matcher.headers[1].value,
        Some(StringMatch::Prefix("prod".into()))
    );
    assert_eq!(api.timeout, Some(std::time::Duration::from_secs(15)));
    assert_eq!(
        vh.routes[2].matcher.path, None,
        "an empty prefix matches all"
    );
    assert_eq!(
        x.clusters.iter().map(String::as_str).collect::<Vec<_>>(),
        ["api", "b", "c"]
    );
}

#[test]
fn an_authority_matcher_is_a_condition_on_host_and_other_pseudo_headers_are_refused() {
    let with_header = |name: &str| {
        let mut r = route(PathSpecifier::Prefix("/".into()), to("a"));
        if let Some(m) = &mut r.r#match {
            m.headers = vec![HeaderMatcher {
                name: name.into(),
                #[allow(deprecated)]
                header_match_specifier: Some(HeaderMatchSpecifier::SuffixMatch(
                    ".example.com".into(),
                )),
                ..HeaderMatcher::default()
            }];
        }
        config(vec![r])
    };
    let x = route_configuration(&with_header(":authority")).unwrap();
    let conditions = &x.virtual_hosts[0].routes[0].matcher.headers;
    assert_eq!(conditions.len(), 1);
    assert!(conditions[0].is_on_host(), "{conditions:?}");
    assert_eq!(
        conditions[0].value,
        Some(StringMatch::Suffix(".example.com".into()))
    );
    assert!(
        refusal(&with_header(":path")).ends_with(
            "\":path\": pseudo-headers other than :method and :authority are not supported"
        ),
        "{}",
        refusal(&with_header(":path"))
    );
}

#[test]
fn retries_timeouts_rewrites_and_header_levels() {
    let mut action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster("app".into())),
        timeout: Some(PbDuration {
            seconds: 0,
            nanos: 0,
        }),
        prefix_rewrite: "/v2".into(),
        retry_policy: Some(RetryPolicy {
            retry_on: "5xx,connect-failure".into(),
            num_retries: Some(UInt32Value { value: 3 }),
            per_try_timeout: Some(PbDuration {
                seconds: 1,
                nanos: 0,
            }),
            ..RetryPolicy::default()
        }),
        ..RouteAction::default()
    };
    action.host_rewrite_specifier = Some(
        envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "api.internal".into(),
        ),
    );
    let add = |k: &str, v: &str| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.into(),
            value: v.into(),
            ..HeaderValue::default()
        }),
        append_action: 2,
        ..HeaderValueOption::default()
    };
    let mut r = route(PathSpecifier::Prefix("/api".into()), Action::Route(action));
    r.request_headers_to_add = vec![add("x-level", "route")];
    let mut rc = config(vec![r]);
    rc.virtual_hosts[0].request_headers_to_add = vec![add("x-level", "vhost")];
    rc.request_headers_to_add = vec![add("x-level", "global"), add("x-empty", "")];
    let x = route_configuration(&rc).unwrap();
    let r = &x.virtual_hosts[0].routes[0];
    assert_eq!(r.timeout, None, "0 is no timeout");
    assert_eq!(r.prefix_rewrite.as_deref(), Some("/v2"));
    assert_eq!(r.host_rewrite.as_deref(), Some("api.internal"));
    let retry = r.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 3);
    assert!(retry.retry_on.contains(&RetryOn::ServerError));
    assert!(retry.retry_on.contains(&RetryOn::PerTryTimeout));
    let levels: Vec<&str> = r
        .request_headers_to_add
        .iter()
        .map(|h| h.value.as_str())
        .collect();
    assert_eq!(levels, ["route", "vhost", "global"], "the outermost wins");
    assert!(!r.request_headers_to_add[0].append);

    rc.most_specific_header_mutations_wins = true;
    let x = route_configuration(&rc).unwrap();
    let levels: Vec<&str> = x.virtual_hosts[0].routes[0]
        .request_headers_to_add
        .iter()
        .map(|h| h.value.as_str())
        .collect();
    assert_eq!(levels, ["global", "vhost", "route"]);
}

#[test]
fn weighted_clusters_become_a_steering_filter() {
    let w = WeightedCluster {
        clusters: vec![
            ClusterWeight {
                name: "zero".into(),
                weight: Some(UInt32Value { value: 0 }),
                ..ClusterWeight::default()
            },
            ClusterWeight {
                name: "a".into(),
                weight: Some(UInt32Value { value: 9 }),
                ..ClusterWeight::default()
            },
            ClusterWeight {
                name: "b".into(),
                weight: Some(UInt32Value { value: 1 }),
                ..ClusterWeight::default()
            },
        ],
        ..WeightedCluster::default()
    };
    let action = Action::Route(RouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(w)),
        ..RouteAction::default()
    });
    let rc = config(vec![route(PathSpecifier::Prefix("/".into()), action)]);
    let x = route_configuration(&rc).unwrap();
    let r = &x.virtual_hosts[0].routes[0];
    assert_eq!(r.cluster, "a");
    assert_eq!(r.filters[0].typed, WEIGHTED_CLUSTERS_FILTER);
    assert_eq!(x.clusters.len(), 3);
}

#[test]
fn what_is_not_implemented_is_refused_by_name() {
    let redirect = config(vec![route(
        PathSpecifier::Prefix("/".into()),
        Action::Redirect(RedirectAction::default()),
    )]);
    assert_eq!(
        refusal(&redirect),
        "route_configuration \"rc\": virtual_hosts[0].routes[0].redirect: not supported: it would change behaviour"
    );

    let mut ci = config(vec![route(PathSpecifier::Prefix("/".into()), to("a"))]);
    if let Some(m) = &mut ci.virtual_hosts[0].routes[0].r#match {
        m.case_sensitive = Some(BoolValue { value: false });
    }
    assert!(refusal(&ci)
        .ends_with("routes[0].match.case_sensitive: not supported: it would change behaviour"));

    let retry = |on: &str| {
        let mut rc = config(vec![route(PathSpecifier::Prefix("/".into()), to("a"))]);
        rc.virtual_hosts[0].retry_policy = Some(RetryPolicy {
            retry_on: on.into(),
            ..RetryPolicy::default()
        });
        refusal(&rc)
    };
    assert_eq!(retry("reset"), "");
    assert!(
        retry("retriable-4xx").contains("routes[0].route.retry_policy.retry_on: \"retriable-4xx\"")
    );

    let mut dup = config(vec![]);
    dup.virtual_hosts.push(VirtualHost {
        name: "other".into(),
        domains: vec!["WEB:9090".into()],
        ..VirtualHost::default()
    });
    assert!(
        refusal(&dup).contains("virtual_hosts[1].domains[0]"),
        "{}",
        refusal(&dup)
    );

    let mut pct = config(vec![route(PathSpecifier::Prefix("/".into()), to("a"))]);
    pct.response_headers_to_add = vec![HeaderValueOption {
        header: Some(HeaderValue {
            key: "x-peer".into(),
            value: "%DOWNSTREAM_REMOTE_ADDRESS%".into(),
            ..HeaderValue::default()
        }),
        ..HeaderValueOption::default()
    }];
    assert!(refusal(&pct).contains("response_headers_to_add[0].header.value"));

    let mut rewrite = config(vec![route(
        PathSpecifier::Path("/x".into()),
        Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster("a".into())),
            prefix_rewrite: "/y".into(),
            ..RouteAction::default()
        }),
    )]);
    assert!(refusal(&rewrite).contains("route.prefix_rewrite"));
    rewrite.virtual_hosts[0].routes[0].r#match = None;
    assert!(refusal(&rewrite).contains("routes[0].match: a route needs a match"));
}

#[test]
fn per_filter_configs_become_route_filters_outermost_first() {
    use envoy_types::pb::{
        envoy::config::route::v3::FilterConfig,
        google::protobuf::{value::Kind, Any, Struct, Value},
    };
    use prost::Message;

    let own = |name: &str| {
        let ts = crate::resources::typed_struct::TypedStruct {
            type_url: format!("type.googleapis.com/proxy.filters.{name}"),
            value: Some(Struct {
                fields: [(
                    "name".to_owned(),
                    Value {
                        kind: Some(Kind::StringValue(format!("{name}-x"))),
                    },
                )]
                .into(),
            }),
        };
        Any {
            type_url: crate::resources::TYPED_STRUCT_TYPE.into(),
            value: ts.encode_to_vec(),
        }
    };
    let mut rc = config(vec![route(PathSpecifier::Prefix("/".into()), to("app"))]);
    rc.typed_per_filter_config
        .insert("global".into(), own("access_log"));
    rc.virtual_hosts[0]
        .typed_per_filter_config
        .insert("vh".into(), own("header_rewrite"));
    rc.virtual_hosts[0].routes[0]
        .typed_per_filter_config
        .insert("r".into(), own("fault"));
    let routes = route_configuration(&rc).unwrap();
    let filters: Vec<(&str, &serde_json::Value)> = routes.virtual_hosts[0].routes[0]
        .filters
        .iter()
        .map(|f| (f.typed.as_str(), f.config.as_value()))
        .collect();
    assert_eq!(
        filters,
        [
            ("access_log", &serde_json::json!({ "name": "access_log-x" })),
            (
                "header_rewrite",
                &serde_json::json!({ "name": "header_rewrite-x" })
            ),
            ("fault", &serde_json::json!({ "name": "fault-x" })),
        ]
    );

    let disabled = FilterConfig {
        disabled: true,
        ..FilterConfig::default()
    };
    rc.virtual_hosts[0].routes[0]
        .typed_per_filter_config
        .insert(
            "envoy.filters.http.rbac".into(),
            Any {
                type_url: "type.googleapis.com/envoy.config.route.v3.FilterConfig".into(),
                value: disabled.encode_to_vec(),
            },
        );
    // Turns the listener filter of that name off for the route.
    let x = route_configuration(&rc).unwrap();
    let route = &x.virtual_hosts[0].routes[0];
    assert_eq!(
        route.filter_overrides.get("envoy.filters.http.rbac"),
        Some(&proxy_core::config::FilterOverride::Disabled)
    );
    assert_eq!(route.filters.len(), 3);
}
