//! Helpers of the Guomi interop tests with Tongsuo (BabaSSL), from the `tongsuopy`
//! wheel driven through ctypes by `tests/interop/tongsuo_peer.py`: finding a Python
//! that has it (else a loud `SKIPPED:` line), and an SM2 test PKI written as PEM.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use proxy_test_support::python::Python;
use proxy_tls::guomi::{load_sm2_key, Sm2RootStore};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::test_pki::{issue, Issued, Spec, CLIENT_AUTH, SERVER_AUTH};

pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// What Tongsuo reports for a peer's sm2sig_sm3 CertificateVerify.
pub const SM2_SIGNED: [&str; 2] = ["PEER_SIGNATURE_TYPE SM2", "PEER_SIGNATURE_DIGEST SM3"];

/// A Python that can import tongsuopy: the deps script's venv
/// (`PROXY_TLS_GUOMI_VENV`), its `--target` directory, or the system one. `None`
/// (and a loud line) if none.
pub fn tongsuo_python() -> Option<Python> {
    Python::find("tongsuopy", "PROXY_TLS_GUOMI_VENV", "tongsuo-venv")
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tongsuo_peer.py")
}

pub fn python_cmd(python: &Python) -> Command {
    let mut cmd = python.command();
    cmd.arg(script());
    cmd
}

/// CA, server (localhost) and client certificates, written as PEM.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Issued,
    pub server: Issued,
    pub client: Issued,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("proxy-tls-guomi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = issue(&Spec::ca("Guomi Test Root"), None);
        let server = issue(
            &Spec::leaf("localhost", &["localhost"], SERVER_AUTH),
            Some(&ca),
        );
        let client = issue(&Spec::leaf("guomi client", &[], CLIENT_AUTH), Some(&ca));
        for (file, text) in [
            ("ca.pem", ca.cert_pem()),
            ("server.pem", server.cert_pem()),
            ("server.key", server.key_pem()),
            ("client.pem", client.cert_pem()),
            ("client.key", client.key_pem()),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Self {
            dir,
            ca,
            server,
            client,
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    pub fn roots(&self) -> Arc<Sm2RootStore> {
        let mut roots = Sm2RootStore::new();
        roots.add(&self.ca.der).unwrap();
        Arc::new(roots)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn key_of(issued: &Issued) -> proxy_tls::guomi::Sm2SigningKey {
    load_sm2_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        issued.key_pkcs8(),
    )))
    .unwrap()
}
