//! Settings that would hurt the process (allocation at load, thread storms) or make
//! every handshake fail are refused at load, naming the field.
#![allow(clippy::unwrap_used)]

use proxy_tls::{
    accept::SessionState,
    config::{OriginationConfig, TerminationConfig},
    OriginationTransport, TerminationLayer, TlsRuntime,
};

fn termination(extra: &str) -> TerminationConfig {
    let yaml =
        format!("certificates: [{{cert: /nonexistent/c.pem, key: /nonexistent/k.pem}}]\n{extra}");
    proxy_core::config::from_yaml(&yaml).unwrap()
}

fn origination(extra: &str) -> OriginationConfig {
    proxy_core::config::from_yaml(&format!("verify: false\n{extra}")).unwrap()
}

fn termination_error(cfg: &TerminationConfig) -> String {
    let err = TerminationLayer::new(cfg, &TlsRuntime::default())
        .err()
        .unwrap();
    proxy_core::ConfigError::from(err).to_string()
}

fn origination_error(cfg: &OriginationConfig) -> String {
    OriginationTransport::try_from(cfg)
        .err()
        .map(|e| proxy_core::ConfigError::from(e).to_string())
        .unwrap_or_default()
}

#[test]
fn a_huge_session_cache_is_refused_not_allocated() {
    // rustls sizes its session cache up front: usize::MAX used to abort the process.
    let cfg = termination(&format!("session: {{cache_entries: {}}}", u32::MAX));
    let err = SessionState::new(&cfg).err().unwrap().to_string();
    assert!(err.starts_with("session.cache_entries: "), "{err}");
    assert!(termination_error(&cfg).starts_with("session.cache_entries: "));
    let ok = termination("session: {cache_entries: 1000000}");
    assert!(SessionState::new(&ok).is_ok());
    // No magic zero: a cache is turned off with `cache: false`.
    let e = proxy_core::config::from_yaml::<TerminationConfig>(
        "certificates: [{secret: s}]\nsession: {cache_entries: 0}",
    )
    .unwrap_err();
    assert_eq!(e.path, "session.cache_entries");
}

#[test]
fn alpn_names_must_be_1_to_255_bytes() {
    let long = "x".repeat(256);
    for (alpn, index) in [("[h2, \"\"]".to_owned(), 1), (format!("[\"{long}\"]"), 0)] {
        let err = termination_error(&termination(&format!("alpn: {alpn}")));
        assert!(err.starts_with(&format!("alpn[{index}]: ")), "{err}");
        let err = origination_error(&origination(&format!("alpn: {alpn}")));
        assert!(err.starts_with(&format!("alpn[{index}]: ")), "{err}");
    }
    let max = "y".repeat(255);
    let ok = origination(&format!("alpn: [h2, \"{max}\"]"));
    assert_eq!(origination_error(&ok), "");
}

#[test]
fn zero_durations_and_empty_lists_are_refused() {
    let err = termination_error(&termination("handshake_timeout: 0s"));
    assert!(err.starts_with("handshake_timeout: "), "{err}");
    let err = origination_error(&origination("handshake_timeout: 0s"));
    assert!(err.starts_with("handshake_timeout: "), "{err}");
    let err = termination_error(&termination("rotation: {poll_interval: 0s}"));
    assert!(err.starts_with("rotation.poll_interval: "), "{err}");
    assert!(err.contains("watch_files: false"), "{err}");
    let err = termination_error(&termination("versions: []"));
    assert!(err.starts_with("versions: "), "{err}");
    let err = origination_error(&origination("roots: {files: []}"));
    assert!(err.starts_with("roots.files: "), "{err}");
}

#[cfg(feature = "offload")]
#[test]
fn an_engine_with_too_many_threads_is_refused_before_any_starts() {
    let cfg: proxy_tls::config::OffloadConfig = proxy_core::config::from_yaml(
        "engines: [{name: ok, threads: 1}, {name: storm, threads: 100000}]",
    )
    .unwrap();
    let err = TlsRuntime::default().dispatcher(&cfg).err().unwrap();
    assert_eq!(err.field(), "offload.engines[1].threads", "{err}");
    let cfg = termination("offload: {engines: [{name: c, threads: 100000}]}");
    let err = termination_error(&cfg);
    assert!(err.starts_with("offload.engines[0].threads: "), "{err}");
}

#[test]
fn early_data_above_1_mib_is_refused() {
    // Early data is buffered whole during the handshake: 4 GiB per connection was
    // accepted.
    let cfg = termination("early_data: {max_bytes: 4GiB}");
    let err = termination_error(&cfg);
    assert!(err.starts_with("early_data.max_bytes: "), "{err}");
    let err = termination_error(&termination("early_data: {max_bytes: 0}"));
    assert!(err.starts_with("early_data.max_bytes: "), "{err}");
    let ok = termination("early_data: {max_bytes: 1MiB}");
    assert!(SessionState::new(&ok).is_ok());
}
