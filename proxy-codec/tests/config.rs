//! The codec's config sections through the whole config: the README's config builds,
//! and one bad value per section is refused with its full field path, through
//! `proxy_core::config::Config` and `Snapshot::build` with the codec registered.
#![allow(clippy::unwrap_used)]

use proxy_core::{config::Config, snapshot::Snapshot, Registry};

fn registry() -> Registry {
    let mut registry = Registry::default();
    proxy_codec::register(&mut registry);
    registry
}

/// The README's YAML.
fn readme_yaml() -> &'static str {
    include_str!("../README.md")
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
}

/// The error `Snapshot::build` gives for `yaml`, as the operator reads it.
fn build_error(yaml: &str) -> String {
    let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    match Snapshot::build(config, &registry(), None) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_readme_config_builds() {
    let config = Config::from_yaml(readme_yaml()).unwrap();
    let snapshot = Snapshot::build(config, &registry(), None).unwrap();
    assert_eq!(snapshot.clusters.len(), 3);
}

#[test]
fn one_bad_value_per_section_names_its_path() {
    let yaml = readme_yaml();
    for (from, to, want) in [
        // Listener side: a size of zero, a count serde refuses, the old field name.
        (
            "bolt: { max_frame_bytes: 8MiB, max_in_flight: 1024 }",
            "bolt: { max_frame_bytes: 0, max_in_flight: 1024 }",
            "listeners[0].protocol_options.bolt.max_frame_bytes: must be at least 1 byte",
        ),
        (
            "bolt: { max_frame_bytes: 8MiB, max_in_flight: 1024 }",
            "bolt: { max_frame_bytes: 8MiB, max_in_flight: 0 }",
            "listeners[0].protocol_options.bolt.max_in_flight: invalid value: integer `0`, expected a nonzero u32",
        ),
        (
            "dubbo: { max_frame_bytes: 16MiB, idle_timeout: 5m }",
            "dubbo: { max_frame_length: 16777216 }",
            "listeners[0].protocol_options.dubbo.max_frame_length: unknown field `max_frame_length`",
        ),
        (
            "dubbo: { max_frame_bytes: 16MiB, idle_timeout: 5m }",
            "dubbo: { max_frame_bytes: 16 parsecs }",
            "listeners[0].protocol_options.dubbo.max_frame_bytes: \"16 parsecs\" is not a size",
        ),
        // Cluster side: a zero duration (not "off"), a bad duration.
        (
            "request_timeout: 3s, heartbeat_interval: 30s }",
            "request_timeout: 3s, heartbeat_interval: 0s }",
            "clusters[0].protocol_options.heartbeat_interval: must be longer than 0s",
        ),
        (
            "protocol_options: { heartbeat_interval: 30s }",
            "protocol_options: { heartbeat_interval: often }",
            "clusters[2].protocol_options.heartbeat_interval: invalid value: string \"often\"",
        ),
    ] {
        assert!(yaml.contains(from), "the README changed: {from}");
        let err = build_error(&yaml.replacen(from, to, 1));
        assert!(err.starts_with(want), "{to}\n  got:  {err}\n  want: {want}");
    }
}

#[test]
fn options_of_a_protocol_the_listener_does_not_serve_are_refused() {
    let yaml = readme_yaml().replace(
        "dubbo: { max_frame_bytes: 16MiB, idle_timeout: 5m }",
        "dubbo: {}\n      toy: {}",
    );
    let err = build_error(&yaml);
    assert!(
        err.starts_with("listeners[0].protocol_options.toy"),
        "{err}"
    );
}
