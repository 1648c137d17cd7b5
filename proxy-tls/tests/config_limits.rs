//! Settings that would hurt the process (allocation at load, thread storms) or make
//! every handshake fail are refused at load, naming the field.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proxy_tls::{
    accept::SessionState,
    config::{OffloadConfig, OriginationConfig, TerminationConfig},
    rotation::MemorySecrets,
    OriginationTransport, TerminationLayer, TlsRuntime,
};

fn termination(extra: &str) -> TerminationConfig {
    let yaml =
        format!("certificates: [{{cert: /nonexistent/c.pem, key: /nonexistent/k.pem}}]\n{extra}");
    serde_yaml::from_str(&yaml).unwrap()
}

fn origination(extra: &str) -> OriginationConfig {
    serde_yaml::from_str(&format!("verify: false\n{extra}")).unwrap()
}

fn termination_error(cfg: &TerminationConfig) -> String {
    let err = TerminationLayer::new(
        cfg,
        Arc::new(MemorySecrets::default()),
        None,
        Arc::default(),
    )
    .err()
    .unwrap();
    err.to_string()
}

fn origination_error(cfg: &OriginationConfig) -> String {
    OriginationTransport::new(cfg, Arc::new(MemorySecrets::default()), Arc::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn a_huge_session_cache_is_refused_not_allocated() {
    // rustls sizes its session cache up front: usize::MAX used to abort the process.
    let cfg = termination(&format!("session: {{cache_size: {}}}", usize::MAX));
    let err = SessionState::new(&cfg).err().unwrap().to_string();
    assert!(err.starts_with("session.cache_size: "), "{err}");
    assert!(termination_error(&cfg).starts_with("session.cache_size: "));
    let ok = termination("session: {cache_size: 1000000}");
    assert!(SessionState::new(&ok).is_ok());
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
fn a_zero_handshake_timeout_is_refused() {
    let err = termination_error(&termination("handshake_timeout: 0s"));
    assert!(err.starts_with("handshake_timeout: "), "{err}");
    let err = origination_error(&origination("handshake_timeout: 0s"));
    assert!(err.starts_with("handshake_timeout: "), "{err}");
}

#[test]
fn an_engine_with_too_many_threads_is_refused_before_any_starts() {
    let cfg: OffloadConfig =
        serde_yaml::from_str("engines: [{name: ok, threads: 1}, {name: storm, threads: 100000}]")
            .unwrap();
    let err = TlsRuntime::default().dispatcher(&cfg).err().unwrap();
    assert!(err.starts_with("offload.engines[1].threads: "), "{err}");
    let cfg = termination("offload: {engines: [{name: c, threads: 100000}]}");
    let err = SessionState::new(&cfg).err().unwrap().to_string();
    assert!(err.starts_with("offload.engines[0].threads: "), "{err}");
}

#[test]
fn early_data_above_1_mib_is_refused() {
    // Early data is buffered whole during the handshake: 4 GiB per connection was
    // accepted.
    let cfg = termination("early_data: {enabled: true, max_size: 4294967295}");
    let err = termination_error(&cfg);
    assert!(err.starts_with("early_data.max_size: "), "{err}");
    let ok = termination("early_data: {enabled: true, max_size: 1048576}");
    assert!(SessionState::new(&ok).is_ok());
}
