//! Properties of W3C trace context parsing: any header value parses or is refused
//! without panicking; a written `traceparent` parses back to itself; one uppercase
//! hex digit or a zero id makes it invalid; a `tracestate` of valid members is
//! valid up to 32 members and not past; the config round-trips through YAML.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proxy_filters::trace::{
    tracestate_is_valid, SpanId, TraceContextConfig, TraceId, TraceParent, MAX_TRACESTATE_MEMBERS,
};

fn trace_id() -> impl Strategy<Value = TraceId> {
    any::<[u8; 16]>().prop_filter_map("all zero", TraceId::from_bytes)
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>().prop_filter_map("all zero", SpanId::from_bytes)
}

/// A simple tracestate key and a value, per the spec's grammar.
fn member() -> impl Strategy<Value = (String, String)> {
    (
        "[a-z][a-z0-9_*/-]{0,20}",
        "[!-+\\--<>-~]([ !-+\\--<>-~]{0,20}[!-+\\--<>-~])?",
    )
        .prop_map(|(k, v)| (k, v))
}

proptest! {
    #[test]
    fn any_value_parses_or_is_refused(s in "\\PC{0,80}") {
        let _ = TraceParent::parse(&s);
        let _ = tracestate_is_valid([s.as_str()]);
    }

    #[test]
    fn well_formed_values_parse_per_the_spec(
        version in prop_oneof![Just("00".to_owned()), Just("ff".to_owned()), "[0-9a-f]{2}"],
        trace in prop_oneof![Just("0".repeat(32)), "[0-9a-f]{32}"],
        parent in prop_oneof![Just("0".repeat(16)), "[0-9a-f]{16}"],
        flags in "[0-9a-f]{2}",
        suffix in prop::option::of("-[ -~]{0,8}"),
    ) {
        let s = format!("{version}-{trace}-{parent}-{flags}{}", suffix.as_deref().unwrap_or(""));
        let expected = version != "ff"
            && !(version == "00" && suffix.is_some())
            && trace != "0".repeat(32)
            && parent != "0".repeat(16);
        let parsed = TraceParent::parse(&s);
        prop_assert_eq!(parsed.is_some(), expected, "{}", s);
        if let Some(tp) = parsed {
            prop_assert_eq!(tp.trace_id.to_string(), trace);
            prop_assert_eq!(tp.parent_id.to_string(), parent);
            prop_assert_eq!(tp.flags, u8::from_str_radix(&flags, 16).unwrap());
        }
    }

    #[test]
    fn written_traceparent_parses_back(t in trace_id(), p in span_id(), sampled in any::<bool>()) {
        let tp = TraceParent::new(t, p, sampled);
        let text = tp.to_string();
        prop_assert_eq!(text.len(), 55);
        prop_assert_eq!(TraceParent::parse(&text), Some(tp));
        let value = tp.to_header_value();
        prop_assert_eq!(value.to_str().unwrap(), text.as_str());
    }

    #[test]
    fn an_uppercase_digit_invalidates(t in trace_id(), p in span_id(), at in 3usize..52) {
        let text = TraceParent::new(t, p, true).to_string();
        prop_assume!(at != 35);
        let c = text.as_bytes()[at];
        prop_assume!(c.is_ascii_lowercase());
        let mut changed = text.into_bytes();
        changed[at] = c.to_ascii_uppercase();
        prop_assert_eq!(TraceParent::parse(std::str::from_utf8(&changed).unwrap()), None);
    }

    #[test]
    fn tracestate_holds_at_most_32_members(members in prop::collection::vec(member(), 0..40)) {
        let mut seen = std::collections::HashSet::new();
        let members: Vec<String> = members
            .into_iter()
            .filter(|(k, _)| seen.insert(k.clone()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let joined = members.join(" , ");
        prop_assert_eq!(tracestate_is_valid([joined.as_str()]), members.len() <= MAX_TRACESTATE_MEMBERS, "{}", joined);
    }

    #[test]
    fn config_roundtrips(percent in 0.0f64..=100.0, header in prop::option::of("x-[a-z]{1,10}")) {
        let cfg = TraceContextConfig {
            sample_percent: percent.try_into().unwrap(),
            response_header: header,
            ..Default::default()
        };
        let yaml = proxy_core::config::to_yaml(&cfg).unwrap();
        let back: TraceContextConfig = proxy_core::config::from_yaml(&yaml).unwrap();
        prop_assert_eq!(back, cfg);
    }
}
