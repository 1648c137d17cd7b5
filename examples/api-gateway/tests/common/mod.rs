//! Helpers of the api-gateway tests: the binary as a child process on a config
//! derived from the shipped ones (fresh ports, test backends), and the Node RPC
//! servers of proxy-codec's interop tests. Every process is killed when its handle
//! drops; every wait has a deadline.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use proxy_test_support::{
    client,
    jwt::{now, TestKey},
    temp::TempDir,
    tools::children,
    upstream::response,
    Upstream,
};
use serde_json::{json, Value};

/// The binary under test.
pub(crate) const GATEWAY: &str = env!("CARGO_BIN_EXE_api-gateway");

/// A file of the example (`default.yaml`, `configs/rpc.yaml`, `README.md`).
pub(crate) fn example_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `yaml` with each `(from, to)` replaced, each `from` required to be there.
pub(crate) fn rewrite(yaml: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(yaml.to_owned(), |y, (from, to)| {
        assert!(y.contains(from), "{from:?} not in the config");
        y.replace(from, to)
    })
}

/// The issuer of the shipped default config's JWTs.
pub(crate) const ISSUER: &str = "https://demo.api-gateway.invalid/";

/// Claims the default config accepts, for `sub` (plan `gold`), valid for five
/// minutes.
pub(crate) fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": "api", "exp": now() + 300, "plan": "gold"})
}

/// A token of [`claims`] for `sub`, signed by `key` as `kid: k1`.
pub(crate) fn token(key: &TestKey, sub: &str) -> String {
    key.sign(Some("k1"), &claims(sub))
}

/// A JWKS server answering `{"keys": keys}` as `application/json`.
pub(crate) fn jwks_server(keys: Vec<Value>) -> Upstream {
    let doc = json!({ "keys": keys }).to_string();
    Upstream::http_async(move |_seen| {
        let body = doc.clone();
        async move {
            let mut r = response(200, body);
            r.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
    })
}

/// The shipped default config on fresh ports, its inline key set swapped for the
/// JWKS server `jwks`, routed to `upstream`.
pub(crate) fn default_config(
    listen: SocketAddr,
    admin: SocketAddr,
    jwks: &Upstream,
    upstream: &Upstream,
) -> String {
    let yaml = example_file("default.yaml");
    let inline = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("jwks: { inline:"))
        .expect("the default config's inline jwks line")
        .trim_start()
        .to_owned();
    let url = format!("http://{}/.well-known/jwks.json", jwks.addr);
    rewrite(
        &yaml,
        &[
            ("127.0.0.1:18080", &listen.to_string()),
            ("127.0.0.1:18001", &admin.to_string()),
            ("\"127.0.0.1:1\"", &format!("\"{}\"", upstream.addr)),
            (
                &inline,
                &format!("jwks: {{ remote: {{ url: \"{url}\" }} }}"),
            ),
        ],
    )
}

/// `GET /api/echo` on `addr` with `Authorization: Bearer TOKEN` and `extra` headers.
pub(crate) async fn get_with_token(
    addr: SocketAddr,
    token: &str,
    extra: &[(&str, &str)],
) -> client::Response {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    client::request(addr, Method::GET, "/api/echo", &headers, Bytes::new())
        .await
        .unwrap()
}

/// Whether `api-gateway --config FILE --validate` accepts the example's `file`
/// (`default.yaml`, `configs/quota.yaml`); the output, to show when it does not.
pub(crate) async fn validates(file: &str) -> (bool, std::process::Output) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let out = tokio::process::Command::new(GATEWAY)
        .arg("--config")
        .arg(path)
        .arg("--validate")
        .output()
        .await
        .unwrap();
    (out.status.success(), out)
}

/// The gateway as a child process; killed on drop, its logs printed on a panic.
#[derive(Debug)]
pub(crate) struct Gateway {
    child: Child,
    _tracked: children::Tracked,
    pub(crate) admin: SocketAddr,
    dir: TempDir,
}

impl Gateway {
    /// Starts `api-gateway --config FILE` with `yaml` (or with no arguments, the
    /// embedded default, when `yaml` is `None`) and waits for `GET /ready` on `admin`.
    pub(crate) async fn start(yaml: Option<&str>, admin: SocketAddr) -> Self {
        let dir = TempDir::new("api-gateway");
        let mut cmd = Command::new(GATEWAY);
        if let Some(yaml) = yaml {
            let path: PathBuf = dir.join("gateway.yaml");
            std::fs::write(&path, yaml).unwrap();
            cmd.arg("--config").arg(path);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout.log")).unwrap())
            .stderr(File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn api-gateway");
        let tracked = children::track(child.id());
        let mut gw = Self {
            child,
            _tracked: tracked,
            admin,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("api-gateway exited ({status})\n{}", gw.logs());
            }
            let ready = tokio::time::timeout(
                Duration::from_secs(1),
                client::request(admin, Method::GET, "/ready", &[], Bytes::new()),
            )
            .await;
            if matches!(ready, Ok(Ok(ref r)) if r.status == StatusCode::OK) {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in 15 s\n{}",
                gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text of the admin listener.
    pub(crate) async fn metrics(&self) -> String {
        client::get(self.admin, "/stats/prometheus", &[])
            .await
            .text()
    }

    /// stdout (the access log) and stderr so far.
    pub(crate) fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            read("stdout.log"),
            read("stderr.log")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sum of the samples whose line contains every one of `needles`.
pub(crate) fn metric(text: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// === the Node RPC servers (proxy-codec/tests/interop/server.js) ===

/// proxy-codec's interop directory and the node_modules `scripts/deps/proxy-codec.sh`
/// installs, or `None` after a loud `SKIPPED:` line.
pub(crate) fn node_peers(test: &str) -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let modules = std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| proxy_test_support::python::test_deps_dir().join("proxy-codec"))
        .join("node_modules");
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: {test}: node is not installed (run scripts/deps/proxy-codec.sh)");
        return None;
    }
    for pkg in ["sofa-rpc-node", "js-remoting-for-apache-dubbo"] {
        if !modules.join(pkg).is_dir() {
            eprintln!(
                "SKIPPED: {test}: npm package {pkg} missing in {} (run scripts/deps/proxy-codec.sh)",
                modules.display()
            );
            return None;
        }
    }
    Some((root.join("proxy-codec/tests/interop"), modules))
}

/// A running `server.js --protocol bolt|dubbo`, killed on drop.
pub(crate) struct NodeServer {
    _child: tokio::process::Child,
    pub(crate) addr: String,
}

impl NodeServer {
    /// Starts the echo service (`com.example.EchoService`) over `protocol`.
    pub(crate) async fn start(peers: &(PathBuf, PathBuf), protocol: &str) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new("node")
            .arg(peers.0.join("server.js"))
            .args(["--protocol", protocol, "--name", "gw"])
            .env("NODE_PATH", &peers.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node server.js");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("server.js printed its port within 20 s")
            .unwrap()
            .unwrap_or_default();
        let port = line.strip_prefix("LISTENING ").unwrap_or_else(|| {
            panic!("{protocol} server printed {line:?}");
        });
        Self {
            _child: child,
            addr: format!("127.0.0.1:{}", port.trim()),
        }
    }
}
