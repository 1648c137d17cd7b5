//! Listener filter stacks per route: which routes get a stack of their own, shared
//! between routes with the same overrides, and how the model reads and writes.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use crate::{
    config::{Config, FilterOverride, HttpFilterConfig},
    registry::Registry,
    snapshot::Snapshot,
};

/// A registry with `noop`, counting the filters it builds.
fn registry(built: Arc<AtomicUsize>) -> Registry {
    let mut r = Registry::default();
    r.register_filter("noop", move |_, _| {
        built.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(|inner| inner))
    });
    r
}

const YAML: &str = r#"
listeners:
  - name: l
    address: 127.0.0.1:0
    http_filters:
      - {typed: noop, name: a}
      - {typed: noop, name: b, disabled: true}
    virtual_hosts:
      - name: v
        domains: ["*"]
        filter_overrides: {a: disabled}
        routes:
          - {match: {path: {prefix: /one}}, cluster: c}
          - {match: {path: {prefix: /two}}, cluster: c, filter_overrides: {a: enabled}}
          - {match: {path: {prefix: /three}}, cluster: c, filter_overrides: {b: {config: {x: 1}}}}
          - {match: {path: {prefix: /four}}, cluster: c, filter_overrides: {b: {config: {x: 1}}}}
      - name: w
        domains: [w.test]
        routes:
          - {match: {}, cluster: c}
clusters:
  - name: c
    endpoints: [{address: "127.0.0.1:1"}]
"#;

#[test]
fn routes_with_the_same_overrides_share_one_stack() {
    let built = Arc::new(AtomicUsize::new(0));
    let config = Config::from_yaml(YAML).unwrap();
    let snapshot = Snapshot::build(config, &registry(built.clone()), None).unwrap();
    let routing = snapshot.routing("l").unwrap();
    let stacks: Vec<Option<usize>> = routing
        .routes
        .routes()
        .map(|r| r.listener_stack.get().copied())
        .collect();
    // /one: `a` off by the host; /two: `a` back on, i.e. the listener's stack;
    // /three and /four: `a` off, `b` on with the same config; w's route: no override.
    assert_eq!(stacks, [Some(0), None, Some(1), Some(1), None]);
    // The two listener filters, and `b`'s replacement once for both routes.
    assert_eq!(built.load(Ordering::SeqCst), 3);
    // One dispatching layer instead of the listener's filters.
    assert_eq!(snapshot.listeners[0].layers.len(), 1);
}

#[test]
fn a_listener_without_overrides_keeps_its_plain_stack() {
    let config = Config::from_yaml(
        &YAML
            .replace("filter_overrides: {a: disabled}", "")
            .replace(", filter_overrides: {a: enabled}", "")
            .replace(", filter_overrides: {b: {config: {x: 1}}}", ""),
    )
    .unwrap();
    let snapshot = Snapshot::build(config, &registry(Arc::new(AtomicUsize::new(0))), None).unwrap();
    // `b` is disabled: only `a` runs, as a plain layer.
    assert_eq!(snapshot.listeners[0].layers.len(), 1);
    let routing = snapshot.routing("l").unwrap();
    assert!(routing
        .routes
        .routes()
        .all(|r| r.listener_stack.get().is_none()));
}

#[test]
fn a_host_override_naming_no_filter_is_refused_at_its_path() {
    let config = Config::from_yaml(&YAML.replace("{a: disabled}", "{jwt: disabled}")).unwrap();
    let err = Snapshot::build(config, &registry(Arc::new(AtomicUsize::new(0))), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "listeners[0].virtual_hosts[0].filter_overrides.jwt: no listener filter of that name"
    );
}

#[test]
fn overrides_and_filter_entries_read_and_write_the_same() {
    let f: HttpFilterConfig =
        crate::config::from_yaml("{typed: noop, name: a, disabled: true, config: {x: 1}}").unwrap();
    assert_eq!((f.name(), f.disabled), ("a", true));
    let back: HttpFilterConfig =
        crate::config::from_yaml(&crate::config::to_yaml(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    let plain: HttpFilterConfig = crate::config::from_yaml("noop").unwrap();
    assert_eq!((plain.name(), plain.disabled), ("noop", false));
    assert_eq!(
        crate::config::to_yaml(&plain).unwrap().trim(),
        "typed: noop"
    );

    for (text, want) in [
        ("disabled", FilterOverride::Disabled),
        ("enabled", FilterOverride::Enabled),
        (
            "{config: {x: 1}}",
            FilterOverride::Config(crate::config::from_yaml("{x: 1}").unwrap()),
        ),
    ] {
        let o: FilterOverride = crate::config::from_yaml(text).unwrap();
        assert_eq!(o, want);
        let back: FilterOverride =
            crate::config::from_yaml(&crate::config::to_yaml(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }
    assert!(crate::config::from_yaml::<FilterOverride>("off").is_err());
    assert!(crate::config::from_yaml::<FilterOverride>("{replace: {}}").is_err());
    assert!(crate::config::from_yaml::<HttpFilterConfig>("{typed: noop, name: ''}").is_err());
}
