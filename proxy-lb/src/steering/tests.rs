use http::{HeaderMap, Method};

use super::*;

const YAML: &str = r#"
rules:
  - name: transfers
    match: {headers: [{name: type, value: {exact: transfer}}]}
    to: {group: Group_2}
  - name: canary
    match: {path: {prefix: /api/}, methods: [GET, POST]}
    to: {groups: [{name: stable, weight: 3}, {name: canary, weight: 1}]}
  - match: {rpc: {service: {exact: com.example.Billing}}}
    to: {cluster: billing_v2}
  - match:
      rpc: {service: {suffix: .Pay}, method: {regex: "ref(und|ill)"}}
      headers: [{name: x-app, value: {exact: shop}}, {name: x-debug, invert: true}]
    to: {clusters: [{name: a, weight: 1}, {name: billing_v2, weight: 1}]}
"#;

fn set() -> RuleSet {
    let cfg: SteeringConfig = proxy_core::config::from_yaml(YAML).unwrap();
    RuleSet::new(&cfg, |c| c == "billing_v2" || c == "a").unwrap()
}

fn view<'a>(
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
    rpc: Option<(&'a str, &'a str)>,
) -> RequestView<'a> {
    RequestView {
        method,
        path,
        headers,
        authority: None,
        rpc,
    }
}

#[test]
fn header_rule_routes_transfers_to_group_2() {
    let s = set();
    let mut h = HeaderMap::new();
    h.insert("type", "transfer".parse().unwrap());
    let i = s.find(&view(&Method::GET, "/x", &h, None)).unwrap();
    assert_eq!(&**s.rules()[i].name(), "transfers");
    assert_eq!(
        s.rules()[i].target(7),
        &SteeringTarget::Group("Group_2".into())
    );
    h.insert("type", "query".parse().unwrap());
    assert_eq!(s.find(&view(&Method::GET, "/x", &h, None)), None);
}

#[test]
fn a_host_rule_sees_the_authority_the_request_names() {
    let cfg: SteeringConfig = proxy_core::config::from_yaml(
        "rules: [{match: {headers: [{name: host, value: {suffix: .eu}}]}, to: {cluster: a}}]",
    )
    .unwrap();
    let s = RuleSet::new(&cfg, |c| c == "a").unwrap();
    let mut h = HeaderMap::new();
    let over_h2 = |authority| RequestView {
        authority,
        ..view(&Method::GET, "/", &h, None)
    };
    assert_eq!(s.find(&over_h2(Some("shop.eu"))), Some(0), ":authority");
    assert_eq!(s.find(&over_h2(Some("shop.us"))), None);
    h.insert("host", "shop.eu".parse().unwrap());
    assert_eq!(s.find(&view(&Method::GET, "/", &h, None)), Some(0), "Host");
}

#[test]
fn weighted_split_follows_weights_and_methods_and_path() {
    let s = set();
    let h = HeaderMap::new();
    let i = s.find(&view(&Method::POST, "/api/v1", &h, None)).unwrap();
    assert_eq!(&**s.rules()[i].name(), "canary");
    assert_eq!(s.find(&view(&Method::DELETE, "/api/v1", &h, None)), None);
    assert_eq!(s.find(&view(&Method::GET, "/apix", &h, None)), None);
    let canary = (0..4000u64)
        .filter(|&r| s.rules()[i].target(r) == &SteeringTarget::Group("canary".into()))
        .count();
    assert_eq!(canary, 1000);
}

#[test]
fn rpc_rules_redirect_interfaces() {
    let s = set();
    let mut h = HeaderMap::new();
    let i = s
        .find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Billing", "charge")),
        ))
        .unwrap();
    assert_eq!(
        s.rules()[i].target(0),
        &SteeringTarget::Cluster("billing_v2".into())
    );
    assert_eq!(
        s.find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Pay", "refund"))
        )),
        None
    );
    h.insert("x-app", "shop".parse().unwrap());
    assert_eq!(
        s.find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Pay", "refund"))
        )),
        Some(3)
    );
    assert_eq!(
        s.find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Pay", "refill"))
        )),
        Some(3)
    );
    assert_eq!(
        s.find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Pay", "pay"))
        )),
        None
    );
    assert_eq!(s.find(&view(&Method::POST, "/", &h, None)), None);
    h.insert("x-debug", "1".parse().unwrap());
    assert_eq!(
        s.find(&view(
            &Method::POST,
            "/",
            &h,
            Some(("com.example.Pay", "refund"))
        )),
        None,
        "an inverted header match"
    );
}

fn err(yaml: &str) -> String {
    match proxy_core::config::from_yaml::<SteeringConfig>(yaml) {
        Ok(cfg) => RuleSet::new(&cfg, |c| c == "known")
            .unwrap_err()
            .to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    assert!(err("rules: []").starts_with("rules: at least one rule"));
    assert!(err("rules: [{match: {}, to: {}}]").starts_with("rules[0].to: "));
    assert!(err("rules: [{match: {}, to: {group: a, cluster: known}}]").starts_with("rules[0].to"));
    assert!(
        err("rules: [{match: {headers: {type: transfer}}, to: {group: g}}]")
            .starts_with("rules[0].match.headers: "),
        "the old map of headers is refused"
    );
    assert!(err("rules: [{match: {}, to: {groups: []}}]")
        .starts_with("rules[0].to.groups: must not be empty"));
    assert!(err("rules: [{match: {}, to: {cluster: nope}}]")
        .starts_with("rules[0].to.cluster: unknown cluster nope"));
    assert!(err(
        "rules: [{match: {}, to: {clusters: [{name: known, weight: 1}, {name: x, weight: 2}]}}]"
    )
    .starts_with("rules[0].to.clusters[1].name: unknown cluster x"));
    assert!(
        err("rules: [{match: {headers: [{name: \"bad name\"}]}, to: {group: g}}]")
            .starts_with("rules[0].match.headers[0].name: ")
    );
    assert_eq!(
        err("rules: [{match: {path: {prefix: api}}, to: {group: g}}]"),
        "rules[0].match.path.prefix: \"api\" must start with /"
    );
    assert!(
        err("rules: [{match: {rpc: {service: {regex: \"(\"}}}, to: {group: g}}]")
            .starts_with("rules[0].match.rpc.service")
    );
    assert!(
        err("rules: [{match: {methods: [\"G T\"]}, to: {group: g}}]")
            .starts_with("rules[0].match.methods[0]: ")
    );
    assert!(err("rules: [{match: {rpc: {}}, to: {group: g}}]").starts_with("rules[0].match.rpc"));
    assert!(err("rules: [{match: {}, to: {groups: [{name: a, weight: 0}]}}]").contains("nonzero"));
    assert!(err("rules: [{match: {}, to: {group: \"\"}}]")
        .starts_with("rules[0].to.group: must not be empty"));
}

mod subset_balancer {
    use std::{collections::BTreeMap, sync::Arc};

    use proxy_core::{cluster::HealthFlags, Balancer, Endpoint};

    use crate::{
        steering::{Fallback, Subset, SubsetConfig, TargetGroup},
        zone::TargetZone,
    };

    fn ep(port: u16, zone: &str, group: &str) -> Arc<Endpoint> {
        let mut md = BTreeMap::new();
        if !zone.is_empty() {
            md.insert("zone".to_owned(), zone.to_owned());
        }
        if !group.is_empty() {
            md.insert("group".to_owned(), group.to_owned());
        }
        Arc::new(Endpoint::new(
            ([127, 0, 0, 1], port).into(),
            std::num::NonZeroU32::MIN,
            md,
        ))
    }

    fn parts(zone: Option<&str>, group: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::builder();
        if let Some(z) = zone {
            b = b.extension(TargetZone(z.into()));
        }
        if let Some(g) = group {
            b = b.extension(TargetGroup(g.into()));
        }
        b.body(()).unwrap().into_parts().0
    }

    fn balancer(fallback: Fallback) -> Subset {
        let cfg = SubsetConfig {
            fallback,
            ..SubsetConfig::default()
        };
        Subset::new(&cfg, || Arc::new(crate::round_robin::RoundRobin::default()))
    }

    fn set() -> Arc<[Arc<Endpoint>]> {
        vec![
            ep(1, "z1", "g1"),
            ep(2, "z1", "g2"),
            ep(3, "z2", "g1"),
            ep(4, "z2", "g2"),
            ep(5, "", ""),
        ]
        .into()
    }

    fn picks(b: &Subset, eps: &[Arc<Endpoint>], p: &http::request::Parts) -> Vec<Option<usize>> {
        let mut v: Vec<_> = (0..8).map(|_| b.pick(eps, p)).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn picks_within_zone_group_and_both() {
        let eps = set();
        let b = balancer(Fallback::None);
        b.endpoints_changed(&eps);
        assert_eq!(
            picks(&b, &eps, &parts(Some("z1"), None)),
            vec![Some(0), Some(1)]
        );
        assert_eq!(
            picks(&b, &eps, &parts(None, Some("g2"))),
            vec![Some(1), Some(3)]
        );
        assert_eq!(
            picks(&b, &eps, &parts(Some("z2"), Some("g1"))),
            vec![Some(2)]
        );
        assert_eq!(picks(&b, &eps, &parts(Some("z9"), None)), vec![None]);
        assert_eq!(
            picks(&b, &eps, &parts(None, None)).len(),
            5,
            "no target: all"
        );
    }

    #[test]
    fn unhealthy_members_are_skipped_and_fallback_applies() {
        let eps = set();
        let b = balancer(Fallback::None);
        b.endpoints_changed(&eps);
        eps[1].set_health_flag(HealthFlags::EJECTED);
        assert_eq!(picks(&b, &eps, &parts(None, Some("g2"))), vec![Some(3)]);
        eps[3].set_health_flag(HealthFlags::ACTIVE_HC_FAILED);
        assert_eq!(picks(&b, &eps, &parts(None, Some("g2"))), vec![None]);
        let any = balancer(Fallback::Any);
        any.endpoints_changed(&eps);
        let got = picks(&any, &eps, &parts(None, Some("g2")));
        assert!(
            !got.contains(&None) && !got.contains(&Some(1)) && !got.contains(&Some(3)),
            "{got:?}"
        );
    }

    #[test]
    fn inner_policies_are_built_from_their_config() {
        let subset = |yaml: &str| {
            let cfg: SubsetConfig = proxy_core::config::from_yaml(yaml).unwrap();
            Subset::try_from(&cfg)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(subset("{}").is_ok());
        assert!(subset("{inner: least_request, fallback: any}").is_ok());
        assert!(subset("{inner: {typed: maglev, config: {hash_policy: [source_ip]}}}").is_ok());
        assert_eq!(
            subset("{inner: {typed: maglev, config: {hash_policy: [source_ip], table_size: 10}}}"),
            Err("inner.config.table_size: 10 is not prime".into())
        );
        assert_eq!(
            subset("{inner: {typed: least_request, config: {choice_count: x}}}")
                .map_err(|e| e.split(':').next().map(str::to_owned)),
            Err(Some("inner.config.choice_count".into()))
        );
        assert!(subset("{inner: p2c}")
            .unwrap_err()
            .starts_with("inner.typed: unknown inner policy \"p2c\""));
        assert_eq!(
            subset("{zone_label: \"\"}"),
            Err("zone_label: must not be empty".into())
        );
    }

    #[test]
    fn a_slice_without_an_index_is_scanned() {
        let eps = set();
        let b = balancer(Fallback::None);
        b.endpoints_changed(&eps);
        // An older snapshot's slice (another allocation): no index for it.
        let older: Vec<Arc<Endpoint>> = eps.iter().take(4).cloned().collect();
        assert_eq!(
            picks(&b, &older, &parts(Some("z2"), None)),
            vec![Some(2), Some(3)]
        );
        older[2].set_health_flag(HealthFlags::REMOVED);
        assert_eq!(picks(&b, &older, &parts(Some("z2"), None)), vec![Some(3)]);
    }
}

mod subset_props {
    use std::{collections::BTreeMap, sync::Arc};

    use proptest::prelude::*;
    use proxy_core::{cluster::HealthFlags, Balancer, Endpoint};

    use crate::{
        steering::{Fallback, Subset, SubsetConfig, TargetGroup},
        zone::TargetZone,
    };

    const ZONES: [&str; 3] = ["z1", "z2", ""];
    const GROUPS: [&str; 3] = ["g1", "g2", ""];

    proptest! {
        /// Whatever the labels, flags and target: a pick is healthy and inside the
        /// target subset when that subset has a healthy member; with `fallback: any`
        /// there is a pick whenever any endpoint is healthy.
        #[test]
        fn picks_are_healthy_and_in_the_subset(
            eps in prop::collection::vec((0usize..3, 0usize..3, 0u8..8), 1..24),
            zone in 0usize..4,
            group in 0usize..4,
            any in any::<bool>(),
            rounds in 1usize..20,
        ) {
            let endpoints: Arc<[Arc<Endpoint>]> = eps
                .iter()
                .enumerate()
                .map(|(i, &(z, g, flags))| {
                    let mut md = BTreeMap::new();
                    if !ZONES[z].is_empty() { md.insert("zone".to_owned(), ZONES[z].to_owned()); }
                    if !GROUPS[g].is_empty() { md.insert("group".to_owned(), GROUPS[g].to_owned()); }
                    let e = Endpoint::new(([127, 0, 0, 1], 1000 + i as u16).into(), std::num::NonZeroU32::MIN, md);
                    for (bit, f) in [HealthFlags::ACTIVE_HC_FAILED, HealthFlags::EJECTED, HealthFlags::REMOVED].into_iter().enumerate() {
                        if flags & (1 << bit) != 0 && flags % 3 == 0 { e.set_health_flag(f); }
                    }
                    Arc::new(e)
                })
                .collect();
            let cfg = SubsetConfig { fallback: if any { Fallback::Any } else { Fallback::None }, ..SubsetConfig::default() };
            let b = Subset::new(&cfg, || Arc::new(crate::round_robin::RoundRobin::default()));
            b.endpoints_changed(&endpoints);
            let z = ZONES.get(zone).filter(|z| !z.is_empty()).copied();
            let g = GROUPS.get(group).filter(|g| !g.is_empty()).copied();
            let mut req = http::Request::builder();
            if let Some(z) = z { req = req.extension(TargetZone(z.into())); }
            if let Some(g) = g { req = req.extension(TargetGroup(g.into())); }
            let parts = req.body(()).unwrap().into_parts().0;
            let fits = |e: &Endpoint| z.is_none_or(|z| e.label("zone") == Some(z)) && g.is_none_or(|g| e.label("group") == Some(g));
            let subset_healthy = endpoints.iter().any(|e| e.is_healthy() && fits(e));
            let any_healthy = endpoints.iter().any(|e| e.is_healthy());
            for _ in 0..rounds {
                let pick = b.pick(&endpoints, &parts);
                if let Some(i) = pick {
                    prop_assert!(endpoints[i].is_healthy());
                    if subset_healthy { prop_assert!(fits(&endpoints[i])); }
                }
                if subset_healthy || (any && any_healthy) {
                    prop_assert!(pick.is_some());
                }
                if !any && !subset_healthy {
                    prop_assert!(pick.is_none());
                }
            }
        }
    }
}

mod layer {
    use std::sync::Arc;

    use proxy_core::{rpc::RpcInfo, Body, BoxError, ClusterOverride, HttpRequest};
    use tower::{ServiceBuilder, ServiceExt};

    use crate::steering::{
        RuleSet, SteeringConfig, SteeringCounters, SteeringHandle, TargetGroup,
        TrafficSteeringLayer,
    };

    #[tokio::test]
    async fn rpc_interfaces_are_redirected_and_counted() {
        let cfg: SteeringConfig = proxy_core::config::from_yaml(
            "rules: [{name: pay, match: {rpc: {service: {exact: com.example.Pay}, method: {exact: refund}}}, to: {cluster: refunds}},
                     {name: rest, match: {rpc: {service: {exact: com.example.Pay}}}, to: {group: Group_2}}]",
        )
        .unwrap();
        let counters = Arc::new(SteeringCounters::default());
        let rules = RuleSet::new(&cfg, |c| c == "refunds")
            .unwrap()
            .count_in(&counters);
        let svc = ServiceBuilder::new()
            .layer(TrafficSteeringLayer::new(
                SteeringHandle::new(rules),
                counters.clone(),
            ))
            .service_fn(|req: HttpRequest| async move {
                let cluster = req
                    .extensions()
                    .get::<ClusterOverride>()
                    .map(|c| c.0.to_string());
                let group = req
                    .extensions()
                    .get::<TargetGroup>()
                    .map(|g| g.0.to_string());
                Ok::<_, BoxError>(http::Response::new(Body::from(format!(
                    "{cluster:?} {group:?}"
                ))))
            });
        let call = |method: &'static str| {
            let svc = svc.clone();
            async move {
                let req = http::Request::builder()
                    .extension(RpcInfo::new("bolt", "com.example.Pay", method))
                    .body(Body::empty())
                    .unwrap();
                let resp = svc.oneshot(req).await.unwrap();
                use http_body_util::BodyExt;
                String::from_utf8(
                    resp.into_body()
                        .collect()
                        .await
                        .unwrap()
                        .to_bytes()
                        .to_vec(),
                )
                .unwrap()
            }
        };
        assert_eq!(call("refund").await, "Some(\"refunds\") None");
        assert_eq!(call("pay").await, "None Some(\"Group_2\")");
        let plain = svc
            .clone()
            .oneshot(http::Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(plain.status(), 200);
        assert_eq!(counters.unmatched_count(), 1);
        assert_eq!(
            counters
                .rule("pay")
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            counters
                .rule("rest")
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
