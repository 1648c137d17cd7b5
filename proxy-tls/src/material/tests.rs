#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::Roots;

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn pair(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

#[test]
fn a_matching_pair_loads() {
    let (c, k) = pair("a.test");
    let ck = certified_key(c.as_bytes(), "a.pem", k.as_bytes(), "a.key", &provider()).unwrap();
    assert_eq!(dns_names(&ck.cert[0]), vec!["a.test".to_owned()]);
}

#[test]
fn a_mismatched_key_is_refused_naming_both_files() {
    let (c, _) = pair("a.test");
    let (_, k) = pair("b.test");
    let err = certified_key(c.as_bytes(), "a.pem", k.as_bytes(), "b.key", &provider())
        .err()
        .unwrap();
    assert!(matches!(err, MaterialError::KeyMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "b.key: private key does not match the certificate in a.pem"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let err = certified_key(
        cert.pem().as_bytes(),
        "old.pem",
        key.serialize_pem().as_bytes(),
        "old.key",
        &provider(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, MaterialError::Expired { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("old.pem: certificate expired at"));
}

#[test]
fn an_expired_root_is_refused_naming_the_file_and_the_root() {
    let ca = |not_after: (i32, u8, u8)| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    };
    let good = ca((2099, 1, 1));
    assert!(roots_from_pem(good.as_bytes(), "ca.pem").is_ok());
    let bundle = format!("{good}{}", ca((2001, 1, 1)));
    let err = roots_from_pem(bundle.as_bytes(), "ca.pem").err().unwrap();
    assert!(matches!(err, MaterialError::Expired { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("ca.pem: certificate 1 (a root) expired at"),
        "{err}"
    );
}

#[test]
fn garbage_is_refused() {
    let err = parse_certs(b"not pem", "x.pem").err().unwrap();
    assert!(matches!(err, MaterialError::NoCertificate { .. }));
    let err = parse_key(b"", "x.key").err().unwrap();
    assert!(matches!(err, MaterialError::NoKey { .. }));
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = parse_certs(bad.as_bytes(), "y.pem").err().unwrap();
    assert!(matches!(err, MaterialError::BadCertificate { .. }), "{err}");
}

#[test]
fn an_unreadable_file_is_named_with_its_field() {
    let pair = KeyPair::files("/nonexistent/c.pem", "/nonexistent/k.pem");
    let secrets = crate::rotation::MemorySecrets::default();
    let err = load_key_pair(&pair, "certificates[1]", &secrets, &provider())
        .err()
        .unwrap();
    assert_eq!(err.field(), "certificates[1].cert");
    assert!(
        crate::error_chain(&err)
            .starts_with("certificates[1].cert: cannot read /nonexistent/c.pem: "),
        "{}",
        crate::error_chain(&err)
    );
    let roots = Roots::files(["/nonexistent/ca.pem"]);
    let err = load_roots(&roots, "client_auth.roots", &secrets)
        .err()
        .unwrap();
    assert_eq!(err.field(), "client_auth.roots.files[0]");
    let err = load_roots(&Roots::secret("ca"), "roots", &secrets)
        .err()
        .unwrap();
    assert_eq!(
        crate::error_chain(&err),
        "roots.secret: secret ca: not provided by the secret source"
    );
}

#[test]
fn a_mismatched_key_file_is_the_key_fields_fault() {
    let dir = std::env::temp_dir().join(format!("proxy-tls-mismatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, _) = pair("a.test");
    let (_, k) = pair("b.test");
    std::fs::write(dir.join("a.pem"), c).unwrap();
    std::fs::write(dir.join("b.key"), k).unwrap();
    let secrets = crate::rotation::MemorySecrets::default();
    let pair = KeyPair::files(dir.join("a.pem"), dir.join("b.key"));
    let err = load_key_pair(&pair, "", &secrets, &provider())
        .err()
        .unwrap();
    assert_eq!(err.field(), "key");
    let _ = std::fs::remove_dir_all(&dir);
}
