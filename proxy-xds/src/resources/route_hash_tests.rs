//! Route hash policies onto proxy-lb's `route_hash` filter, and the hash balancers of
//! CDS that read its key, checked against what proxy-lb builds.

use envoy_types::pb::{
    envoy::config::{
        cluster::v3::{
            cluster::{LbConfig, LbPolicy, MaglevLbConfig, RingHashLbConfig},
            Cluster,
        },
        route::v3::{
            route::Action,
            route_action::{
                hash_policy::{
                    ConnectionProperties, Cookie, FilterState, Header, PolicySpecifier,
                    QueryParameter,
                },
                ClusterSpecifier, HashPolicy,
            },
            route_match::PathSpecifier,
            Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        },
    },
    google::protobuf::{Duration as PbDuration, UInt64Value},
};
use proxy_lb::{
    hash_policy::HashPolicyConfig,
    maglev::{Maglev, MaglevConfig},
    ring_hash::{RingHash, RingHashConfig},
    route_hash::{RouteHashConfig, RouteHashLayer},
};

use crate::resources::{cluster, route_configuration};

fn policy(p: PolicySpecifier, terminal: bool) -> HashPolicy {
    HashPolicy {
        policy_specifier: Some(p),
        terminal,
    }
}

fn routes(hash_policy: Vec<HashPolicy>) -> RouteConfiguration {
    RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..RouteMatch::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster("app".into())),
                    hash_policy,
                    ..RouteAction::default()
                })),
                ..Route::default()
            }],
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

/// The route's `route_hash` section, checked by proxy-lb.
fn route_hash(hash_policy: Vec<HashPolicy>) -> Result<Option<RouteHashConfig>, String> {
    let vhosts = route_configuration(&routes(hash_policy))
        .map_err(|e| e.to_string())?
        .virtual_hosts;
    let Some(f) = vhosts[0].routes[0]
        .filters
        .iter()
        .find(|f| f.typed == "route_hash")
    else {
        return Ok(None);
    };
    let cfg: RouteHashConfig = f.config.parse().expect("proxy-lb parses it");
    RouteHashLayer::try_from(&cfg).expect("proxy-lb accepts it");
    Ok(Some(cfg))
}

#[test]
fn route_hash_policies_become_the_route_hash_filter() {
    let cfg = route_hash(vec![
        policy(
            PolicySpecifier::Header(Header {
                header_name: "X-User".into(),
                regex_rewrite: None,
            }),
            true,
        ),
        policy(
            PolicySpecifier::Cookie(Cookie {
                name: "session".into(),
                ..Cookie::default()
            }),
            true,
        ),
        // Gives no key: left out.
        policy(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: false }),
            true,
        ),
        policy(
            PolicySpecifier::QueryParameter(QueryParameter { name: "uid".into() }),
            true,
        ),
        policy(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true }),
            false,
        ),
    ])
    .unwrap()
    .expect("a route_hash filter");
    assert_eq!(
        cfg.hash_policy,
        [
            HashPolicyConfig::header(http::HeaderName::from_static("x-user")),
            HashPolicyConfig::cookie("session"),
            HashPolicyConfig::query_parameter("uid"),
            HashPolicyConfig::SourceIp,
        ]
    );
    // One policy: `terminal` does not matter.
    assert!(route_hash(vec![policy(
        PolicySpecifier::QueryParameter(QueryParameter { name: "uid".into() }),
        false,
    )])
    .unwrap()
    .is_some());
    assert_eq!(route_hash(vec![]), Ok(None));
    assert_eq!(
        route_hash(vec![policy(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: false }),
            false,
        )]),
        Ok(None)
    );
}

#[test]
fn route_hash_policies_we_cannot_honour_are_refused() {
    let at = "route_configuration \"rc\": virtual_hosts[0].routes[0].route.";
    let refused = |p: Vec<HashPolicy>| route_hash(p).expect_err("refused");
    let cookie = |c: Cookie| policy(PolicySpecifier::Cookie(c), true);
    assert_eq!(
        refused(vec![cookie(Cookie {
            name: "s".into(),
            ttl: Some(PbDuration::default()),
            ..Cookie::default()
        })]),
        format!("{at}hash_policy[0].cookie.ttl: not supported: cookies are not generated")
    );
    assert!(refused(vec![cookie(Cookie {
        name: "s".into(),
        path: "/".into(),
        ..Cookie::default()
    })])
    .contains("hash_policy[0].cookie.path: not supported"));
    assert!(refused(vec![policy(
        PolicySpecifier::FilterState(FilterState { key: "k".into() }),
        true
    )])
    .contains("hash_policy[0].filter_state: not supported"));
    assert!(refused(vec![policy(
        PolicySpecifier::Header(Header {
            header_name: "x".into(),
            regex_rewrite: Some(Default::default()),
        }),
        true
    )])
    .contains("hash_policy[0].header.regex_rewrite: not supported"));
    let q = |terminal| {
        policy(
            PolicySpecifier::QueryParameter(QueryParameter { name: "a".into() }),
            terminal,
        )
    };
    assert!(refused(vec![q(true), q(false), q(true)])
        .contains("hash_policy[1].terminal: only terminal policies before the last"));
    assert!(
        refused(vec![HashPolicy::default()]).contains("hash_policy[0].policy_specifier: missing")
    );
}

#[test]
fn ring_hash_and_maglev_clusters_hash_on_the_route_key() {
    let mut c = Cluster {
        name: "app".into(),
        lb_policy: LbPolicy::RingHash as i32,
        ..Cluster::default()
    };
    let lb = cluster(&c).unwrap().config.lb;
    let rh: RingHashConfig = lb.config.parse().unwrap();
    assert_eq!(
        rh,
        RingHashConfig {
            hash_policy: vec![HashPolicyConfig::Route],
            min_ring_size: 1024,
            max_ring_size: 8 * 1024 * 1024,
        }
    );
    c.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
        minimum_ring_size: Some(UInt64Value { value: 64 }),
        maximum_ring_size: Some(UInt64Value { value: 4096 }),
        hash_function: 0,
    }));
    let rh: RingHashConfig = cluster(&c).unwrap().config.lb.config.parse().unwrap();
    assert_eq!((rh.min_ring_size, rh.max_ring_size), (64, 4096));
    RingHash::new(&rh).expect("proxy-lb accepts it");

    c.lb_policy = LbPolicy::Maglev as i32;
    c.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
        table_size: Some(UInt64Value { value: 5 }),
    }));
    let x = cluster(&c).unwrap().config.lb;
    assert_eq!(x.typed, "maglev");
    let m: MaglevConfig = x.config.parse().unwrap();
    assert_eq!(m.table_size, 5);
    assert_eq!(m.hash_policy, [HashPolicyConfig::Route]);
    Maglev::new(&m).expect("proxy-lb accepts it");
    c.lb_config = None;
    let m: MaglevConfig = cluster(&c).unwrap().config.lb.config.parse().unwrap();
    assert_eq!(m.table_size, 65537);
}
