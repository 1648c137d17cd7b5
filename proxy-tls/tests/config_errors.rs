//! Every config mistake in a `tls` section names its full field path from the
//! document root, through `Config` and `Snapshot::build` with proxy-tls registered:
//! one bad value per section of the termination and origination configs. Relative
//! certificate paths resolve from the config file's directory.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proxy_core::{config::Config, snapshot::Snapshot, Registry};
use proxy_test_support::{pki::Pki, yaml};

fn registry() -> Registry {
    let mut r = Registry::default();
    proxy_tls::register(&mut r);
    r
}

/// A document with one `tls` listener filter (`termination`, YAML flow text) and one
/// cluster with a `tls` transport (`origination`).
fn document(termination: &str, origination: &str) -> String {
    yaml::config(
        &[yaml::listener(
            "web",
            "up",
            &[&format!(
                "network_filters:\n      - typed: tls\n        config: {termination}"
            )],
        )],
        &[yaml::cluster(
            "up",
            &["127.0.0.1:9"],
            &[&format!(
                "transport:\n      typed: tls\n      config: {origination}"
            )],
        )],
    )
}

fn build(config: Config) -> Result<(), String> {
    Snapshot::build(config, &registry(), None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn error(termination: &str, origination: &str) -> String {
    let config = Config::from_yaml(&document(termination, origination));
    match config {
        Ok(c) => build(c).err().unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

const TERMINATION: &str = "listeners[0].network_filters[0].config";
const ORIGINATION: &str = "clusters[0].transport.config";

struct Files {
    cert: String,
    key: String,
    ca: String,
}

fn files(pki: &Pki) -> Files {
    let a = pki.server("a", &["a.test"]);
    Files {
        cert: a.cert.display().to_string(),
        key: a.key.display().to_string(),
        ca: pki.ca_pem.display().to_string(),
    }
}

#[test]
fn each_termination_mistake_names_its_path() {
    let pki = Pki::new("paths-termination");
    let Files { cert, key, ca } = files(&pki);
    let ok_origination = "{ verify: false }";
    let good = format!("{{ cert: {cert}, key: {key} }}");
    let t = |rest: &str| format!("{{ certificates: [{good}]{rest} }}");
    assert_eq!(
        error(&t(""), ok_origination),
        "",
        "the base config is valid"
    );
    let cases: Vec<(String, String)> = vec![
        (
            "{ certificates: [] }".into(),
            "certificates: at least one certificate is required".into(),
        ),
        (
            format!("{{ certificates: [{good}, {{ cert: /nonexistent/x.pem, key: {key} }}] }}"),
            "certificates[1].cert: cannot read /nonexistent/x.pem: ".into(),
        ),
        (
            format!("{{ certificates: [{good}, {{ cert: {cert}, key: /nonexistent/x.key }}] }}"),
            "certificates[1].key: cannot read /nonexistent/x.key: ".into(),
        ),
        (
            format!("{{ certificates: [{good}, {{ cert: {cert} }}] }}"),
            "certificates[1].key: missing (required)".into(),
        ),
        (
            "{ certificates: [{ secret: nowhere }] }".into(),
            "certificates[0].secret: secret nowhere: not provided by the secret source".into(),
        ),
        (
            t(", client_auth: { roots: { files: [/nonexistent/ca.pem] } }"),
            "client_auth.roots.files[0]: cannot read /nonexistent/ca.pem: ".into(),
        ),
        (
            t(", client_auth: { roots: /nonexistent/ca.pem }"),
            "client_auth.roots: unknown variant `/nonexistent/ca.pem`".into(),
        ),
        (
            t(", client_auth: { roots_secret: ca }"),
            "client_auth.roots_secret: unknown field".into(),
        ),
        (t(", alpn: [h2, \"\"]"), "alpn[1]: \"\" must be 1 to 255 bytes long".into()),
        (t(", versions: [tls14]"), "versions[0]: unknown variant `tls14`".into()),
        (t(", handshake_timeout: soon"), "handshake_timeout: ".into()),
        (
            t(", session: { cache_entries: 2000000 }"),
            "session.cache_entries: 2000000 is above 1000000".into(),
        ),
        (
            t(", early_data: { max_bytes: 2MiB }"),
            "early_data.max_bytes: 2097152 is above 1048576".into(),
        ),
        (
            t(", early_data: {}, versions: [tls12]"),
            "early_data: early data needs tls13 in versions".into(),
        ),
        (
            t(", early_data: { enabled: true }"),
            "early_data.enabled: unknown field".into(),
        ),
        (
            t(", rotation: { poll_interval: 0s }"),
            "rotation.poll_interval: must be above zero".into(),
        ),
        (
            t(", offload: { engines: [{ name: card0, threads: 100000 }] }"),
            if cfg!(feature = "offload") {
                "offload.engines[0].threads: 100000 is above 256".into()
            } else {
                "offload: needs the `offload` cargo feature".into()
            },
        ),
        (
            t(", offload: { engines: [{ name: card0, thread_priority: { nice: 0 } }] }"),
            if cfg!(feature = "offload") {
                "offload.engines[0].thread_priority.nice: 0 is not a nice value from 1 to 19"
                    .into()
            } else {
                "offload: needs the `offload` cargo feature".into()
            },
        ),
        (
            t(", offload: { engines: [{ name: card0, thread_priority: low }] }"),
            "offload.engines[0].thread_priority: unknown variant `low`".into(),
        ),
        (
            t(", max_handshakes_in_progress: 0"),
            "max_handshakes_in_progress: ".into(),
        ),
        (
            t(&format!(
                ", client_auth: {{ roots: {{ files: [{ca}] }} }}, guomi: {{ cert: {cert}, key: {key} }}"
            )),
            if cfg!(feature = "guomi") {
                "guomi.client_roots: required when client_auth is set".into()
            } else {
                "guomi: needs the `guomi` cargo feature".into()
            },
        ),
        (
            t(&format!(
                ", guomi: {{ cert: {cert}, key: {key}, client_roots: webpki }}"
            )),
            if cfg!(feature = "guomi") {
                "guomi.client_roots: SM2 roots come from files or a secret".into()
            } else {
                "guomi: needs the `guomi` cargo feature".into()
            },
        ),
        (
            t(", bogus: 1"),
            "bogus: unknown field".into(),
        ),
    ];
    for (termination, expected) in cases {
        let err = error(&termination, ok_origination);
        let want = format!("{TERMINATION}.{expected}");
        assert!(
            err.starts_with(&want),
            "{termination}\n  got:  {err}\n  want: {want}"
        );
    }
}

#[cfg(feature = "guomi")]
#[test]
fn a_guomi_certificate_that_is_not_sm2_names_its_field() {
    let pki = Pki::new("paths-guomi");
    let Files { cert, key, .. } = files(&pki);
    let err = error(
        &format!(
            "{{ certificates: [{{ cert: {cert}, key: {key} }}], guomi: {{ cert: {cert}, key: {key} }} }}"
        ),
        "{ verify: false }",
    );
    assert!(
        err.starts_with(&format!("{TERMINATION}.guomi.key: ")),
        "an ECDSA key is no SM2 key: {err}"
    );
}

#[test]
fn each_origination_mistake_names_its_path() {
    let pki = Pki::new("paths-origination");
    let Files { cert, key, ca } = files(&pki);
    let termination = format!("{{ certificates: [{{ cert: {cert}, key: {key} }}] }}");
    let cases: Vec<(String, String)> = vec![
        (
            "{ guomi: { roots: { files: [/nonexistent/sm2-ca.pem] } } }".into(),
            if cfg!(feature = "guomi") {
                "guomi.roots.files[0]: cannot read /nonexistent/sm2-ca.pem: ".into()
            } else {
                "guomi: needs the `guomi` cargo feature".into()
            },
        ),
        (
            "{ server_name: \"not a name\" }".into(),
            "server_name: \"not a name\" is not a DNS name or IP address".into(),
        ),
        (
            "{ roots: { files: [/nonexistent/ca.pem] } }".into(),
            "roots.files[0]: cannot read /nonexistent/ca.pem: ".into(),
        ),
        (
            "{ roots: { files: [], system: true } }".into(),
            "roots: ".into(),
        ),
        (
            "{ roots: { secret: upstream-ca } }".into(),
            "roots.secret: secret upstream-ca: not provided by the secret source".into(),
        ),
        (
            "{ verify: false, alpn: [h2] }".into(),
            "alpn: [\"h2\"] leaves out \"http/1.1\", the protocol of this cluster".into(),
        ),
        (
            format!("{{ roots: {{ files: [{ca}] }}, client_cert: {{ cert: {cert}, key: /nonexistent/k.pem }} }}"),
            "client_cert.key: cannot read /nonexistent/k.pem: ".into(),
        ),
        (
            format!("{{ roots: {{ files: [{ca}] }}, client_cert: {{ cert: {cert}, key: {key}, default: true }} }}"),
            "client_cert.default: unknown field".into(),
        ),
        (
            "{ verify: false, handshake_timeout: 0s }".into(),
            "handshake_timeout: must be above zero".into(),
        ),
    ];
    for (origination, expected) in cases {
        let err = error(&termination, &origination);
        let want = format!("{ORIGINATION}.{expected}");
        assert!(
            err.starts_with(&want),
            "{origination}\n  got:  {err}\n  want: {want}"
        );
    }
}

#[test]
fn relative_paths_resolve_from_the_config_files_directory() {
    let pki = Pki::new("paths-relative");
    let a = pki.server("a", &["a.test"]);
    let certs = pki.dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (from, to) in [
        (&a.cert, "a.pem"),
        (&a.key, "a.key"),
        (&pki.ca_pem, "ca.pem"),
    ] {
        std::fs::copy(from, certs.join(to)).unwrap();
    }
    let yaml = document(
        "{ certificates: [{ cert: certs/a.pem, key: certs/a.key }], \
         client_auth: { roots: { files: [certs/ca.pem] } } }",
        "{ roots: { files: [certs/ca.pem] }, client_cert: { cert: certs/a.pem, key: certs/a.key } }",
    );
    let file = pki.dir.join("proxy.yaml");
    std::fs::write(&file, &yaml).unwrap();
    assert_ne!(std::env::current_dir().unwrap(), pki.dir);
    build(Config::load(&file).unwrap()).unwrap();
    // The same text without a file to resolve from reads the working directory.
    let err = build(Config::from_yaml(&yaml).unwrap()).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{ORIGINATION}.roots.files[0]: cannot read certs/ca.pem: "
        )),
        "{err}"
    );
    assert!(!Path::new("certs/ca.pem").exists());
}

/// Two certificates marked `default: true` are refused naming the second one (the
/// last no longer silently wins).
#[test]
fn a_second_default_certificate_is_refused() {
    let pki = Pki::new("paths-two-defaults");
    let Files { cert, key, .. } = files(&pki);
    let pair = format!("{{ cert: {cert}, key: {key}, default: true }}");
    let err = error(
        &format!("{{ certificates: [{{ cert: {cert}, key: {key} }}, {pair}, {pair}] }}"),
        "{ verify: false }",
    );
    assert_eq!(
        err,
        format!(
            "{TERMINATION}.certificates[2].default: certificates[1] is already the default; \
             at most one certificate may be marked default"
        )
    );
    // One default is fine.
    let one = error(
        &format!("{{ certificates: [{{ cert: {cert}, key: {key} }}, {pair}] }}"),
        "{ verify: false }",
    );
    assert_eq!(one, "");
}
