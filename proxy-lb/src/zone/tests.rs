use std::collections::HashSet;

use super::*;

const YAML: &str = r#"
local_data_centre: dc1
local_cluster: app
zones:
  - {name: z1, data_centre: dc1, city: hz, weight: 2}
  - {name: z2, data_centre: dc1, city: hz}
  - {name: z3, data_centre: dc2, city: hz}
  - {name: z4, data_centre: dc3, city: sh}
  - {name: z5, data_centre: dc2, city: hz}
remote_clusters: {dc2: dc2_proxies, dc3: dc3_proxies}
uid:
  source: {header: x-uid}
  modulus: 100
  ranges:
    - {from: 0, to: 50, zone: z1}
    - {from: 50, to: 80, zone: z3}
    - {from: 90, to: 100, zone: z4}
"#;

fn cfg() -> ZoneRoutingConfig {
    proxy_core::config::from_yaml(YAML).unwrap()
}

fn topo() -> Topology {
    Topology::new(&cfg()).unwrap()
}

fn err(mutate: impl FnOnce(&mut ZoneRoutingConfig)) -> String {
    let mut c = cfg();
    mutate(&mut c);
    Topology::new(&c).unwrap_err().to_string()
}

#[test]
fn config_parses_uid_sources() {
    assert_eq!(
        cfg().uid.unwrap().source,
        UidSource::Header(proxy_core::matcher::Header(http::HeaderName::from_static(
            "x-uid"
        )))
    );
    let c: UidSource = proxy_core::config::from_yaml("{cookie: uid}").unwrap();
    assert_eq!(c, UidSource::Cookie("uid".into()));
    let e = proxy_core::config::from_yaml::<UidSource>("{cookie: uid, query: u}").unwrap_err();
    assert!(
        e.to_string().contains("cookie") || e.to_string().contains("map"),
        "{e}"
    );
    let e = proxy_core::config::from_yaml::<UidSource>("{header: \"a b\"}").unwrap_err();
    assert_eq!(e.path, "header", "{e}");
    assert!(
        err(|c| c.uid.as_mut().unwrap().source = UidSource::Query(String::new()))
            .starts_with("uid.source.query: must not be empty")
    );
    assert_eq!(cfg().cookie, "zone");
    assert_eq!(cfg().forward_header.0, "x-proxy-zone");
}

#[test]
fn zero_weight_refused_by_serde() {
    let bad = YAML.replace("weight: 2", "weight: 0");
    let e = proxy_core::config::from_yaml::<ZoneRoutingConfig>(&bad).unwrap_err();
    assert_eq!(e.path, "zones[0].weight", "{e}");
}

#[test]
fn bad_topologies_name_the_field() {
    assert!(
        err(|c| c.uid.as_mut().unwrap().ranges[1].zone = "nope".into())
            .starts_with("uid.ranges[1].zone: unknown zone nope")
    );
    assert!(err(|c| c.zones[1].name = "z1".into()).starts_with("zones[1].name: duplicate"));
    assert!(err(|c| c.zones[2].city = "sh".into())
        .starts_with("zones[4].city: data centre dc2 is already in city sh"));
    assert!(err(|c| {
        c.remote_clusters.remove("dc3");
    })
    .starts_with("remote_clusters.dc3"));
    assert!(err(|c| {
        c.remote_clusters.insert("dc9".into(), "x".into());
    })
    .starts_with("remote_clusters.dc9: unknown data centre"));
    assert!(err(|c| c.local_data_centre = "dcx".into()).starts_with("local_data_centre"));
    assert!(err(|c| c.uid.as_mut().unwrap().ranges[1].from = 40)
        .starts_with("uid.ranges[1]: overlaps uid.ranges[0]"));
    assert!(err(|c| c.uid.as_mut().unwrap().ranges[2].to = 101).starts_with("uid.ranges[2].to"));
    assert!(err(|c| c.uid.as_mut().unwrap().ranges.clear()).starts_with("uid.ranges: "));
    assert!(err(|c| c.zones.clear()).starts_with("zones:"));
    assert!(err(|c| c.zones[0].name = "a;b".into()).starts_with("zones[0].name"));
    assert!(Topology::new(&ZoneRoutingConfig { uid: None, ..cfg() }).is_ok());
}

#[test]
fn uid_shards_map_to_zones() {
    let t = topo();
    let name = |z: Option<ZoneId>| z.map(|z| t.zones()[z].name.to_string());
    assert_eq!(name(t.zone_for_uid("0")), Some("z1".into()));
    assert_eq!(name(t.zone_for_uid("12349")), Some("z1".into()));
    assert_eq!(name(t.zone_for_uid("249")), Some("z1".into()));
    assert_eq!(name(t.zone_for_uid("1050")), Some("z3".into()));
    assert_eq!(name(t.zone_for_uid("79")), Some("z3".into()));
    assert_eq!(name(t.zone_for_uid("85")), None, "gap");
    assert_eq!(
        name(t.zone_for_uid("99999999999999999999999999999")),
        Some("z4".into())
    );
    assert_eq!(name(t.zone_for_uid("")), None);
    // Non-numeric uids hash stably.
    assert_eq!(uid_shard("alice", 100), uid_shard("alice", 100));
    assert!(uid_shard("alice", 100).is_some_and(|s| s < 100));
    assert_ne!(uid_shard("alice", 1_000_000), uid_shard("bob", 1_000_000));
    assert_eq!(uid_shard("123", 100), Some(23));
}

#[test]
fn failover_order_goes_dc_then_city_then_other_city() {
    let t = topo();
    let order: Vec<(String, FailoverStep)> = t
        .failover_order(0)
        .iter()
        .map(|&(z, s)| (t.zones()[z].name.to_string(), s))
        .collect();
    assert_eq!(
        order,
        vec![
            ("z2".into(), FailoverStep::SameDataCentre),
            ("z3".into(), FailoverStep::SameCity),
            ("z5".into(), FailoverStep::SameCity),
            ("z4".into(), FailoverStep::OtherCity),
        ]
    );
    let from_z3: Vec<&str> = t
        .failover_order(2)
        .iter()
        .map(|&(z, _)| &*t.zones()[z].name)
        .collect();
    assert_eq!(from_z3, vec!["z5", "z1", "z2", "z4"]);
}

#[test]
fn weighted_zone_follows_weights() {
    let t = topo();
    let mut counts = [0u32; 5];
    for r in 0..6000u64 {
        counts[t.weighted_zone(r)] += 1;
    }
    // weights 2,1,1,1,1 of 6
    assert_eq!(counts, [2000, 1000, 1000, 1000, 1000]);
}

fn inputs<'a>(f: Option<&'a str>, u: Option<&'a str>, c: Option<&'a str>) -> ZoneInputs<'a> {
    ZoneInputs {
        forwarded: f,
        uid: u,
        cookie: c,
    }
}

#[test]
fn decision_order_and_failover() {
    let t = topo();
    let all = |_| true;
    // random
    let d = decide(&t, &inputs(None, None, None), false, 2, all);
    assert_eq!((d.source, d.served), (ZoneSource::Random, Some(1)));
    // cookie
    let d = decide(&t, &inputs(None, None, Some("z3")), false, 0, all);
    assert_eq!((d.source, d.preferred), (ZoneSource::Cookie, 2));
    // uid beats cookie unless cookie_over_uid
    let d = decide(&t, &inputs(None, Some("7"), Some("z3")), false, 0, all);
    assert_eq!((d.source, d.preferred), (ZoneSource::Uid, 0));
    let d = decide(&t, &inputs(None, Some("7"), Some("z3")), true, 0, all);
    assert_eq!((d.source, d.preferred), (ZoneSource::Cookie, 2));
    // unmapped uid, unknown cookie -> random
    let d = decide(&t, &inputs(None, Some("85"), Some("zz")), false, 0, all);
    assert_eq!(d.source, ZoneSource::Random);
    // failover: z1 down -> z2 (same dc); z1,z2 down -> z3 (same city); only z4 -> other city
    let d = decide(&t, &inputs(None, Some("1"), None), false, 0, |z| z != 0);
    assert_eq!((d.served, d.step), (Some(1), FailoverStep::SameDataCentre));
    let d = decide(&t, &inputs(None, Some("1"), None), false, 0, |z| z > 1);
    assert_eq!((d.served, d.step), (Some(2), FailoverStep::SameCity));
    let d = decide(&t, &inputs(None, Some("1"), None), false, 0, |z| z == 3);
    assert_eq!((d.served, d.step), (Some(3), FailoverStep::OtherCity));
    let d = decide(&t, &inputs(None, Some("1"), None), false, 0, |_| false);
    assert_eq!((d.preferred, d.served), (0, None));
    // forwarded: local zones only
    let d = decide(&t, &inputs(Some("z1"), Some("60"), None), false, 0, all);
    assert_eq!((d.source, d.served), (ZoneSource::Forwarded, Some(0)));
    let d = decide(&t, &inputs(Some("z1"), None, None), false, 0, |z| z != 0);
    assert_eq!((d.served, d.step), (Some(1), FailoverStep::SameDataCentre));
    let d = decide(&t, &inputs(Some("z1"), None, None), false, 0, |z| z > 1);
    assert_eq!(
        d.served, None,
        "a forwarded request is never forwarded again"
    );
}

#[test]
fn forwarded_request_counts_the_move_made_here() {
    let t = topo();
    // Forwarded for z3 (data centre dc2), served in z1 here: the request crossed data
    // centres at the peer; here it moved within this data centre.
    let d = decide(&t, &inputs(Some("z3"), None, None), false, 0, |_| true);
    assert_eq!((d.source, d.served), (ZoneSource::Forwarded, Some(0)));
    assert_eq!(d.step, FailoverStep::SameDataCentre);
    // A request of z3 that was not forwarded and fails over to z1 crossed data centres.
    let d = decide(&t, &inputs(None, None, Some("z3")), false, 0, |z| z < 2);
    assert_eq!((d.served, d.step), (Some(0), FailoverStep::SameCity));
}

#[test]
fn cookie_and_query_parsing() {
    let mut h = http::HeaderMap::new();
    h.append("cookie", "a=1; zone=z2".parse().unwrap());
    h.append("cookie", "b=2".parse().unwrap());
    assert_eq!(cookie_value(&h, "zone"), Some("z2"));
    assert_eq!(cookie_value(&h, "b"), Some("2"));
    assert_eq!(cookie_value(&h, "zon"), None);
    assert_eq!(query_value(Some("x=1&uid=42&y"), "uid"), Some("42"));
    assert_eq!(query_value(Some("y"), "y"), Some(""));
    assert_eq!(query_value(None, "uid"), None);
}

#[test]
fn every_zone_reaches_every_other_in_failover() {
    let t = topo();
    for z in 0..t.zones().len() {
        let set: HashSet<ZoneId> = t.failover_order(z).iter().map(|p| p.0).collect();
        assert_eq!(set.len(), t.zones().len() - 1);
        assert!(!set.contains(&z));
    }
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The served zone is available; none is served only when no zone is; the
        /// step names the served zone's relation to the preferred one; forwarded
        /// requests stay local.
        #[test]
        fn decisions_respect_availability_and_steps(
            down in prop::collection::vec(any::<bool>(), 5),
            uid in prop::option::of(0u32..200),
            cookie in prop::option::of(0usize..6),
            forwarded in prop::option::of(0usize..6),
            random in any::<u64>(),
        ) {
            let t = topo();
            let names = ["z1", "z2", "z3", "z4", "z5", "zz"];
            let uid_s = uid.map(|u| u.to_string());
            let inputs = ZoneInputs {
                forwarded: forwarded.map(|i| names[i]),
                uid: uid_s.as_deref(),
                cookie: cookie.map(|i| names[i]),
            };
            let up = |z: ZoneId| !down[z];
            let d = decide(&t, &inputs, false, random, up);
            let local_only = d.source == ZoneSource::Forwarded;
            let allowed = |z: ZoneId| !local_only || t.zones()[z].local;
            match d.served {
                Some(s) => {
                    prop_assert!(up(s) && allowed(s));
                    let (p, s) = (&t.zones()[d.preferred], &t.zones()[s]);
                    let expect = if p.name == s.name {
                        FailoverStep::None
                    } else if local_only || p.data_centre == s.data_centre {
                        FailoverStep::SameDataCentre
                    } else if p.city == s.city {
                        FailoverStep::SameCity
                    } else {
                        FailoverStep::OtherCity
                    };
                    prop_assert_eq!(d.step, expect);
                    // Nearer zones first: nothing nearer was up.
                    let nearer = |z: ZoneId| {
                        let c = &t.zones()[z];
                        match d.step {
                            FailoverStep::None | FailoverStep::SameDataCentre => false,
                            FailoverStep::SameCity => c.data_centre == p.data_centre,
                            FailoverStep::OtherCity => c.city == p.city,
                        }
                    };
                    prop_assert!((0..5).all(|z| !(nearer(z) && up(z) && allowed(z))));
                }
                None => prop_assert!((0..5).all(|z| !(up(z) && allowed(z)))),
            }
        }
    }
}
