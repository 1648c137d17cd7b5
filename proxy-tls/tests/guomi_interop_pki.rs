//! Guomi material interop with Tongsuo (BabaSSL): SM2 keys it generates load here,
//! SM2-SM3 signatures verify both ways, and a chain its libcrypto writes passes our
//! verifier and serves a handshake.
//!
//! The wheel is installed by `scripts/deps/proxy-tls-guomi.sh`; without it the
//! tests print `SKIPPED:` and pass.

#![allow(clippy::unwrap_used, missing_docs)]

use crate::test_pki;
use crate::tongsuo;

use std::path::Path;
use std::sync::Arc;

use proxy_tls::guomi::{
    load_sm2_key, GuomiClientBuilder, GuomiServerBuilder, Sm2RootStore, CERT_SM2_ID,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use sm2::dsa::signature::Verifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tongsuo::{tongsuo_python, TEST_TIMEOUT};

/// SM2 keys Tongsuo generates (PKCS#8 and SEC1 PEM) load, Tongsuo's SM2-SM3
/// signatures verify here under the default identifier, and ours verify there.
#[test]
fn tongsuo_sm2_keys_and_signatures() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_sm2.py");
    let run = |args: &[&str]| {
        let mut cmd = python.command();
        let out = cmd.arg(&script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let message = b"guomi interop message";
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let unhex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    for _ in 0..3 {
        // One JSON object of strings (JSON is YAML).
        let made: std::collections::BTreeMap<String, String> =
            proxy_core::config::from_yaml(&run(&["make", &hex(message)])).unwrap();
        let field = |k: &str| made[k].clone();
        let point = unhex(&field("point"));

        for pem in [field("pkcs8"), field("sec1")] {
            let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
            let key = load_sm2_key(&der).unwrap();
            let spki = key.public_key_der();
            assert!(
                spki.ends_with(&point),
                "the loaded key has Tongsuo's public point"
            );
        }

        let theirs = signature_from_der(&unhex(&field("signature")));
        let verifier = sm2::dsa::VerifyingKey::from_sec1_bytes(CERT_SM2_ID, &point).unwrap();
        assert!(
            verifier.verify(message, &theirs).is_ok(),
            "Tongsuo's signature verifies with the default SM2 identifier"
        );

        let secret = sm2::SecretKey::from_sec1_pem(&field("sec1")).unwrap();
        let ours = test_pki::sign_der(&secret, CERT_SM2_ID, message);
        let verdict = run(&["verify", &hex(&point), &hex(message), &hex(&ours)]);
        assert_eq!(verdict.trim(), "VALID");
        let mut tampered = message.to_vec();
        tampered[0] ^= 1;
        let verdict = run(&["verify", &hex(&point), &hex(&tampered), &hex(&ours)]);
        assert_eq!(verdict.trim(), "INVALID");
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }` to a signature (test-side parser).
fn signature_from_der(der: &[u8]) -> sm2::dsa::Signature {
    use x509_cert::der::{asn1::UintRef, Decode};
    let [r, s] = <[UintRef<'_>; 2]>::from_der(der).unwrap();
    let pad = |b: &[u8]| {
        let mut out = [0u8; 32];
        out[32 - b.len()..].copy_from_slice(b);
        out
    };
    sm2::dsa::Signature::from_scalars(pad(r.as_bytes()), pad(s.as_bytes())).unwrap()
}

/// A chain Tongsuo's libcrypto writes (root and leaf, SM2-with-SM3 without
/// parameters) passes our verifier, and serves a handshake with its key.
#[tokio::test]
async fn tongsuo_made_certificates_pass_our_verifier() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("proxy-tls-guomi-x509-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = python.command();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_x509.py");
    let out = cmd.arg(script).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let roots = Arc::new(Sm2RootStore::from_pem_file(dir.join("ca.pem")).unwrap());
    let leaf = rustls::pki_types::CertificateDer::from_pem_file(dir.join("leaf.pem")).unwrap();
    let verifier = proxy_tls::guomi::Sm2ServerVerifier::new(roots.clone());
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &verifier,
        &leaf,
        &[],
        &ServerName::try_from("localhost").unwrap(),
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap();

    let server = GuomiServerBuilder::from_pem_files(dir.join("leaf.pem"), dir.join("leaf.key"))
        .unwrap()
        .build()
        .unwrap();
    let client = GuomiClientBuilder::new(roots).build().unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.unwrap();
        tls.write_all(b"hi").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let mut tls = tokio::time::timeout(
        TEST_TIMEOUT,
        TlsConnector::from(Arc::new(client)).connect(ServerName::try_from("localhost").unwrap(), a),
    )
    .await
    .unwrap()
    .unwrap();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"hi");
    server_task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
