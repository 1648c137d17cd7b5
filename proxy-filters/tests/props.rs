//! Properties of the matchers and config sections: CIDR parsing and membership,
//! string matchers against their std meaning, RBAC combinators, the sampler's
//! rate, and config round trips through YAML.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proxy_filters::{
    adaptive::AdaptiveConfig,
    config::{Percent, Sampler},
    fault::FaultConfig,
    local_rate_limit::LocalRateLimitConfig,
    matcher::{Cidr, StringMatch},
    mirror::MirrorConfig,
    rbac::{Facts, MethodName, Permission, Principal, RbacConfig, RpcMatch},
};

fn roundtrip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let yaml = proxy_core::config::to_yaml(v).unwrap();
    proxy_core::config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
}

fn v4_mask(p: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0)
}

proptest! {
    #[test]
    fn cidr_v4_contains_exactly_its_prefix(a: u32, b: u32, p in 0u8..=32) {
        let c: Cidr = format!("{}/{p}", Ipv4Addr::from(a)).parse().unwrap();
        let again: Cidr = c.to_string().parse().unwrap();
        prop_assert_eq!(c, again);
        prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(a))));
        let same = a & v4_mask(p) == b & v4_mask(p);
        prop_assert_eq!(c.contains(IpAddr::V4(Ipv4Addr::from(b))), same);
        // IPv4-mapped IPv6 peers match like their IPv4 address.
        prop_assert_eq!(c.contains(IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())), same);
    }

    #[test]
    fn cidr_v6_contains_exactly_its_prefix(a: u128, b: u128, p in 0u8..=128) {
        let c: Cidr = format!("{}/{p}", Ipv6Addr::from(a)).parse().unwrap();
        prop_assert_eq!(c, c.to_string().parse::<Cidr>().unwrap());
        let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
        let ip = Ipv6Addr::from(b);
        if ip.to_ipv4_mapped().is_none() {
            prop_assert_eq!(c.contains(IpAddr::V6(ip)), a & mask == b & mask);
        }
    }

    #[test]
    fn normalized_paths_are_stable_and_clean(path in "(/|[a-z]|\\.|%[0-9a-fA-F]{2}|%){0,24}") {
        let once = proxy_filters::matcher::normalize_path(&path).into_owned();
        prop_assert!(once.starts_with('/'), "{once}");
        prop_assert!(!once.contains("//"), "{once}");
        prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{once}");
        let twice = proxy_filters::matcher::normalize_path(&once).into_owned();
        // Idempotent once escapes are decoded (an escape can only form a new one
        // from its own decoded bytes if they were unreserved, which stay decoded).
        prop_assert_eq!(proxy_filters::matcher::normalize_path(&twice).into_owned(), twice);
    }

    #[test]
    fn cidr_parse_never_panics(s in ".{0,48}") {
        let _ = s.parse::<Cidr>();
    }

    #[test]
    fn cidr_prefix_over_the_width_is_refused(a: u32, p in 33u16..1000) {
        let bad = format!("{}/{p}", Ipv4Addr::from(a));
        prop_assert!(bad.parse::<Cidr>().is_err());
    }

    #[test]
    fn string_matchers_mean_what_std_means(needle in "[a-z/]{0,6}", hay in "[a-z/]{0,12}") {
        prop_assert_eq!(StringMatch::Exact(needle.clone()).matches(&hay), hay == needle);
        prop_assert_eq!(StringMatch::Prefix(needle.clone()).matches(&hay), hay.starts_with(&needle));
        prop_assert_eq!(StringMatch::Suffix(needle.clone()).matches(&hay), hay.ends_with(&needle));
        prop_assert_eq!(StringMatch::Contains(needle.clone()).matches(&hay), hay.contains(&needle));
        // An escaped literal as a regex is an exact match (regexes are anchored).
        let re = StringMatch::Regex(regex::escape(&needle).parse().unwrap());
        prop_assert_eq!(re.matches(&hay), hay == needle);
    }

    #[test]
    fn percentages_over_100_are_refused(p in 100.0001f64..1e9) {
        let yaml = format!("{{abort: {{status: 503, abort_percent: {p}}}}}");
        let e = proxy_core::config::from_yaml::<FaultConfig>(&yaml).unwrap_err();
        prop_assert_eq!(e.path, "abort.abort_percent");
    }

    #[test]
    fn sampler_rate_is_close_to_the_percentage(seed: u64, pct in 0.0f64..=100.0) {
        let p = Percent::try_from(pct).unwrap();
        let s = Sampler::new(Some(seed));
        let n = 20_000;
        let hits = (0..n).filter(|_| s.hit(p.per_million())).count() as f64;
        let q = pct / 100.0;
        let sd = (n as f64 * q * (1.0 - q)).sqrt();
        prop_assert!((hits - n as f64 * q).abs() <= 5.0 * sd + 1.0, "{hits} for {pct}%");
    }

    #[test]
    fn fault_config_round_trips(
        delay_ms in proptest::option::of(1u64..100_000),
        dp in 0.0f64..=100.0,
        status in 200u16..600,
        ap in 0.0f64..=100.0,
        seed: Option<u64>,
    ) {
        let mut yaml = format!("abort: {{status: {status}, abort_percent: {ap}}}\n");
        if let Some(ms) = delay_ms {
            yaml.push_str(&format!("delay: {{duration: {ms}ms, delay_percent: {dp}}}\n"));
        }
        if let Some(s) = seed {
            yaml.push_str(&format!("seed: {s}\n"));
        }
        let cfg: FaultConfig = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(roundtrip(&cfg), cfg);
    }

    #[test]
    fn rate_limit_config_round_trips(
        requests in 1u32..10_000,
        secs in 1u64..3600,
        burst in proptest::option::of(1u32..1000),
        header in "x-[a-z]{1,10}",
    ) {
        let burst = burst.map(|b| format!(", burst: {b}")).unwrap_or_default();
        let yaml = format!(
            "rate: {{requests: {requests}, per: {secs}s{burst}}}\ndescriptors: [{{key: {{header: {header}}}, rate: {{requests: {requests}, per: {secs}s}}}}, {{key: source_ip, rate: {{requests: 1, per: 1s}}, max_keys: 7}}]"
        );
        let cfg: LocalRateLimitConfig = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(roundtrip(&cfg), cfg);
    }

    #[test]
    fn mirror_config_round_trips(
        pct in 0.0f64..=100.0,
        kib in 1u64..4096,
        in_flight in 1usize..1000,
        suffix in proptest::option::of("-[a-z]{1,8}"),
    ) {
        let suffix = suffix.map(|s| format!(", host_suffix: {s}")).unwrap_or_default();
        let yaml = format!(
            "{{cluster: shadow, sample_percent: {pct}, max_body_bytes: {kib}KiB, max_in_flight: {in_flight}{suffix}}}"
        );
        let cfg: MirrorConfig = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(cfg.max_body_bytes.get(), kib * 1024);
        prop_assert_eq!(roundtrip(&cfg), cfg);
    }

    #[test]
    fn adaptive_config_round_trips(
        cpu in 0.1f64..=100.0,
        percentile in 0.1f64..=100.0,
        high_cost in 0.1f64..=100.0,
        segments in 1usize..=64,
    ) {
        let yaml = format!(
            "{{cpu: {{target_percent: {cpu}}}, latency: {{percentile: {percentile}}}, \
              cost: {{high_cost_limit_percent: {high_cost}, path_segments: {segments}}}}}"
        );
        let cfg: AdaptiveConfig = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert!(cfg.validate().is_ok());
        prop_assert_eq!(roundtrip(&cfg), cfg);
    }

    #[test]
    fn rbac_config_round_trips_and_not_flips(principal in principal(), permission in permission(), shadow: bool) {
        let cfg = RbacConfig {
            name: Some("p".into()),
            policies: vec![proxy_filters::rbac::Policy {
                name: "one".into(),
                action: proxy_filters::rbac::Action::Allow,
                principals: vec![principal.clone()],
                permissions: vec![permission.clone()],
            }],
            default_action: None,
            shadow,
        };
        prop_assert_eq!(roundtrip(&cfg), cfg);

        let headers = http::HeaderMap::new();
        let method = http::Method::GET;
        let facts = Facts {
            peer: Some("10.1.2.3".parse().unwrap()),
            identity: None,
            headers: &headers,
            authority: Some("api.local"),
            host: Some("api.local"),
            path: "/v1/users",
            method: &method,
            rpc: None,
        };
        let not = Principal::Not(Box::new(principal.clone()));
        prop_assert_eq!(not.matches(&facts), !principal.matches(&facts));
        let and = Permission::And(vec![permission.clone()]);
        prop_assert_eq!(and.matches(&facts), permission.matches(&facts));
        prop_assert!(!Permission::Or(vec![]).matches(&facts));
        prop_assert!(Permission::And(vec![]).matches(&facts));
    }
}

fn string_match() -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        "[a-z/.]{0,8}".prop_map(StringMatch::Exact),
        "[a-z/.]{0,8}".prop_map(StringMatch::Prefix),
        "[a-z/.]{0,8}".prop_map(StringMatch::Suffix),
        "[a-z]{1,5}".prop_map(|s| StringMatch::Regex(format!("{s}.*").parse().unwrap())),
    ]
}

fn principal() -> impl Strategy<Value = Principal> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Principal::Any),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Principal::SourceIp(
            format!("{}/{p}", Ipv4Addr::from(a)).parse().unwrap()
        )),
        string_match().prop_map(Principal::Identity),
        any::<bool>().prop_map(Principal::Authenticated),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Principal::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Principal::Or),
            inner.prop_map(|p| Principal::Not(Box::new(p))),
        ]
    })
}

fn permission() -> impl Strategy<Value = Permission> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Permission::Any),
        string_match().prop_map(Permission::Path),
        string_match().prop_map(Permission::Host),
        (proptest::option::of(string_match()), string_match()).prop_map(|(service, method)| {
            Permission::Rpc(RpcMatch {
                service,
                method: Some(method),
            })
        }),
        prop::sample::select(vec!["GET", "POST", "DELETE"])
            .prop_map(|m| { Permission::Method(vec![MethodName(m.parse().unwrap())]) }),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Permission::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Permission::Or),
            inner.prop_map(|p| Permission::Not(Box::new(p))),
        ]
    })
}
