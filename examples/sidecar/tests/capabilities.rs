//! The capability crates assembled in the sidecar binary, used as someone copying the
//! example would: `configs/mesh.yaml` validates as committed, and the running binary,
//! started on that same file (only its addresses replaced by free loopback ports),
//! serves one smoke request per capability family:
//!
//! - proxy-tls: TLS 1.3 termination with mTLS (curl with a client certificate passes,
//!   without one is refused), TLS origination with a client certificate (outbound
//!   cluster to the inbound listener, standing in for a peer sidecar);
//! - proxy-filters: rbac (403 `rbac_denied` by path and for another namespace's
//!   identity), local_rate_limit (429 with `retry-after` after a per-route burst),
//!   access_log (a JSON line on stdout);
//! - proxy-lb: maglev keeps a user on one endpoint and spreads users, least_request
//!   answers, outlier_detection and health_check are live on `/clusters`;
//! - proxy-codec: Bolt and Dubbo calls and HTTP on one `auto` port (in-process Rust
//!   peers), and the third-party sofa-rpc-node Bolt client and server when
//!   `scripts/deps/proxy-codec.sh` installed them (otherwise a loud SKIPPED).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use common::*;
use http::{Method, StatusCode};
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    Bolt, Dubbo, Protocol,
};
use proxy_test_support::{
    client, eventually, free_addr,
    rpc::{self, read_frame},
    temp::TempDir,
    tools,
    upstream::{response, Echoed},
    with_timeout, Upstream,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(30);
const TOOL_LIMIT: Duration = Duration::from_secs(10);

// The addresses written in configs/mesh.yaml; the tests replace each with a free port.
const ADMIN: &str = "127.0.0.1:15000";
const INBOUND: &str = "127.0.0.1:15006";
const OUTBOUND: &str = "127.0.0.1:15001";
const RPC: &str = "127.0.0.1:12200";
const APP: &str = "127.0.0.1:9080";
const RATINGS: [&str; 2] = ["127.0.0.1:9081", "127.0.0.1:9082"];
const DETAILS: [&str; 2] = ["127.0.0.1:9083", "127.0.0.1:9084"];
const BOLT_UPSTREAM: &str = "127.0.0.1:12220";
const DUBBO_UPSTREAM: &str = "127.0.0.1:20880";

/// The SNI name the inbound listener's certificate carries.
const REVIEWS_HOST: &str = "reviews.default.svc.cluster.local";

fn sidecar_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn mesh_path() -> PathBuf {
    sidecar_dir().join("configs/mesh.yaml")
}

/// A file of the test certificates, as an absolute path string.
fn cert(name: &str) -> String {
    sidecar_dir()
        .join("configs/certs")
        .join(name)
        .display()
        .to_string()
}

/// `yaml` (configs/mesh.yaml's text) with its certificate paths, relative to
/// configs/, made absolute: for a copy written elsewhere.
fn absolute_certs(yaml: &str) -> String {
    assert!(
        yaml.contains(" certs/") || yaml.contains("[certs/"),
        "configs/mesh.yaml no longer names certs/...: update this test"
    );
    let certs = format!("{}/", sidecar_dir().join("configs/certs").display());
    yaml.replace(" certs/", &format!(" {certs}"))
        .replace("[certs/", &format!("[{certs}"))
}

/// configs/mesh.yaml with each placeholder address replaced, and its certificate
/// paths made absolute (the copy is written to a temporary directory).
fn mesh_yaml(addresses: &[(&str, SocketAddr)]) -> String {
    let mut yaml = std::fs::read_to_string(mesh_path()).unwrap();
    for (placeholder, addr) in addresses {
        assert!(
            yaml.contains(placeholder),
            "configs/mesh.yaml no longer mentions {placeholder}: update this test"
        );
        yaml = yaml.replace(placeholder, &addr.to_string());
    }
    absolute_certs(&yaml)
}

// === in-process Bolt and Dubbo peers (proxy-codec's frame API) ===

/// A SOFARPC Bolt v1 call of `service.method` with `content` as its payload.
fn bolt_call(id: u32, service: &str, method: &str, content: &'static str) -> BoltFrame {
    BoltFrame {
        version: BoltVersion::V1,
        rpc_type: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: id,
        codec: bolt::CODEC_HESSIAN2,
        timeout: 3000,
        status: 0,
        class_name: Bytes::from_static(bolt::SOFA_REQUEST.as_bytes()),
        header: Bolt::header_map([
            ("service", Some(service)),
            ("sofa_head_target_service", Some(service)),
            ("sofa_head_method_name", Some(method)),
        ]),
        content: Bytes::from_static(content.as_bytes()),
    }
}

/// A Dubbo (hessian2) two-way call of `org.example.Greeter.hello("world")`.
fn dubbo_call(id: u64) -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.Greeter")
        .string("1.0.0")
        .string("hello");
    w.string("Ljava/lang/String;").string("world");
    w.string_map([("path", "org.example.Greeter")]);
    DubboFrame {
        flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: Bytes::from(w.into_bytes()),
    }
}

/// Sends `frame` on a fresh connection to `addr` and reads the answer.
async fn rpc_roundtrip<P: Protocol>(p: P, addr: SocketAddr, frame: &P::Frame) -> P::Frame {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    p.encode(frame, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    read_frame(&p, &mut s, &mut BytesMut::new())
        .await
        .expect("the sidecar closed the RPC connection without an answer")
}

// === the running mesh sidecar ===

/// A ratings endpoint: answers its name, or 500 when the request's `x-fail` header
/// names it.
fn ratings_upstream(name: &'static str) -> Upstream {
    Upstream::http(move |seen| {
        let fail = seen.headers.get("x-fail").is_some_and(|v| v == name);
        let status = if fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        response(status.as_u16(), name)
    })
}

/// The sidecar running configs/mesh.yaml, with its upstreams.
struct Mesh {
    sidecar: Sidecar,
    inbound: SocketAddr,
    outbound: SocketAddr,
    rpc: SocketAddr,
    ratings: [SocketAddr; 2],
    _upstreams: Vec<Upstream>,
    _rpc_peers: Vec<Upstream>,
}

impl Mesh {
    /// Starts the upstreams (the local app echoes, ratings and details answer their
    /// name, Rust Bolt and Dubbo peers) and the sidecar; `bolt` replaces the Rust Bolt
    /// peer with another server.
    async fn start(bolt: Option<SocketAddr>) -> Self {
        let app = Upstream::echo("app");
        let ratings = [ratings_upstream("ratings-a"), ratings_upstream("ratings-b")];
        let details = [Upstream::named("details-a"), Upstream::named("details-b")];
        let mut rpc_peers = Vec::new();
        let bolt = match bolt {
            Some(addr) => addr,
            None => {
                let peer = rpc::upstream(Bolt, "bolt-echo");
                let addr = peer.addr;
                rpc_peers.push(peer);
                addr
            }
        };
        let dubbo_peer = rpc::upstream(Dubbo, "dubbo-greeter");
        let dubbo = dubbo_peer.addr;
        rpc_peers.push(dubbo_peer);
        // The listener ports were free a moment ago; if another test took one in the
        // meantime the sidecar refuses to start ("in use"): try again with new ones.
        let mut attempt = 0;
        let (sidecar, inbound, outbound, rpc) = loop {
            attempt += 1;
            let (admin, inbound, outbound, rpc) =
                (free_addr(), free_addr(), free_addr(), free_addr());
            let yaml = mesh_yaml(&[
                (ADMIN, admin),
                (INBOUND, inbound),
                (OUTBOUND, outbound),
                (RPC, rpc),
                (APP, app.addr),
                (RATINGS[0], ratings[0].addr),
                (RATINGS[1], ratings[1].addr),
                (DETAILS[0], details[0].addr),
                (DETAILS[1], details[1].addr),
                (BOLT_UPSTREAM, bolt),
                (DUBBO_UPSTREAM, dubbo),
            ]);
            match tokio::spawn(async move { Sidecar::start(&yaml, admin).await }).await {
                Ok(sidecar) => break (sidecar, inbound, outbound, rpc),
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    let message = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or_default();
                    if attempt < 3 && message.contains("in use") {
                        eprintln!("port clash, retrying with new ports: {message}");
                        continue;
                    }
                    std::panic::resume_unwind(panic);
                }
                Err(e) => panic!("starting the sidecar: {e}"),
            }
        };
        Self {
            sidecar,
            inbound,
            outbound,
            rpc,
            ratings: [ratings[0].addr, ratings[1].addr],
            _upstreams: [app].into_iter().chain(ratings).chain(details).collect(),
            _rpc_peers: rpc_peers,
        }
    }

    /// curl arguments for HTTPS to the inbound listener as workload `identity`
    /// (`productpage`, `stranger`), or without a client certificate (`None`).
    fn https_args(&self, identity: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--cacert".to_owned(),
            cert("ca.pem"),
            "--resolve".to_owned(),
            format!("{REVIEWS_HOST}:{}:127.0.0.1", self.inbound.port()),
        ];
        if let Some(id) = identity {
            args.extend([
                "--cert".to_owned(),
                cert(&format!("{id}.pem")),
                "--key".to_owned(),
                cert(&format!("{id}.key")),
            ]);
        }
        args
    }

    fn inbound_url(&self, path: &str) -> String {
        format!("https://{REVIEWS_HOST}:{}{path}", self.inbound.port())
    }

    /// One curl request to the inbound listener.
    async fn inbound_get(
        &self,
        identity: Option<&str>,
        path: &str,
        extra: &[&str],
    ) -> CurlResponse {
        let mut args = self.https_args(identity);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push(self.inbound_url(path));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args, TOOL_LIMIT).await
    }

    /// A plain HTTP/1.1 request to `addr` for virtual host `host`.
    async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> client::Response {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        client::request(addr, Method::GET, path, &all, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.sidecar.logs()))
    }
}

/// Asserts the samples of `/stats/prometheus` matching every needle sum to at least
/// `at_least`.
async fn assert_metric(mesh: &Mesh, needles: &[&str], at_least: f64) {
    let metrics = mesh.sidecar.metrics().await;
    let sum = metric_sum(&metrics, needles);
    assert!(
        sum >= at_least,
        "{needles:?} = {sum}, want >= {at_least}\n{metrics}"
    );
}

// === (1) the committed config validates ===

/// `sidecar --validate --config .../mesh.yaml` succeeds from examples/sidecar/ and
/// from the workspace root alike (the certificate paths resolve from the config
/// file's directory): every capability name resolves and the certificates load. A
/// missing key file is refused naming the field and the file.
#[tokio::test]
async fn mesh_config_validates_as_committed() {
    with_timeout(LIMIT, async {
        let root = sidecar_dir().join("../..");
        for (dir, config) in [
            (sidecar_dir().to_path_buf(), "configs/mesh.yaml"),
            (root, "examples/sidecar/configs/mesh.yaml"),
        ] {
            let out = tokio::process::Command::new(SIDECAR)
                .args(["--validate", "--config", config])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(TOOL_LIMIT, out)
                .await
                .unwrap()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "sidecar --validate --config {config} from {} failed: {stderr}",
                dir.display()
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config ok");
        }

        let dir = TempDir::new("mesh-broken");
        let broken = dir.join("mesh.yaml");
        let yaml = absolute_certs(&std::fs::read_to_string(mesh_path()).unwrap()).replacen(
            "certs/reviews.key",
            "certs/missing.key",
            1,
        );
        std::fs::write(&broken, yaml).unwrap();
        let out = run_sidecar(
            &[
                "--validate".as_ref(),
                "--config".as_ref(),
                broken.as_os_str(),
            ],
            TOOL_LIMIT,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a missing key file passed validation"
        );
        assert!(
            stderr.contains(
                "listeners[0].network_filters[1].config.certificates[0].key: cannot read "
            ) && stderr.contains("missing.key"),
            "the error should name the field and the file: {stderr}"
        );
    })
    .await;
}

// === (2) smoke requests through the running binary ===

/// proxy-tls termination with mTLS, proxy-filters rbac, per-route local_rate_limit
/// and access_log on the inbound listener.
#[tokio::test]
async fn inbound_mtls_rbac_rate_limit_and_access_log() {
    with_timeout(LIMIT, async {
        if !tools::installed("curl") {
            return;
        }
        let mesh = Mesh::start(None).await;

        // A mesh workload with a certificate from the mesh root gets through to the app.
        let r = mesh
            .inbound_get(
                Some("productpage"),
                "/reviews/1",
                &["-H", "x-request-id: smoke-1"],
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "{} {}\n{}",
            r.stderr,
            r.text(),
            mesh.sidecar.logs()
        );
        assert!(
            r.protocol.starts_with("HTTP/2"),
            "ALPN h2 expected, got {}",
            r.protocol
        );
        let echoed = Echoed::parse(&r.body);
        assert_eq!(echoed.upstream, "app");
        assert_eq!(echoed.uri, "/reviews/1");
        assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));

        // No client certificate: the TLS 1.3 handshake ends with an alert, no response.
        let r = mesh.inbound_get(None, "/reviews/1", &[]).await;
        assert_ne!(
            r.exit_code, 0,
            "a client without a certificate got through: {r:?}"
        );
        assert_eq!(
            r.status, 0,
            "no HTTP response expected without a client certificate"
        );

        // rbac: /admin is denied to everyone, other namespaces are denied everything.
        let r = mesh
            .inbound_get(Some("productpage"), "/admin/settings", &[])
            .await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.header("x-proxy-error"), Some("rbac_denied"));
        let r = mesh.inbound_get(Some("stranger"), "/reviews/1", &[]).await;
        assert_eq!(r.status, 403, "ns/legacy must be denied: {}", r.text());

        // local_rate_limit on the export route: 2 requests, then 429 with retry-after.
        // Three requests on one connection (one curl run, one handshake).
        let mut args = mesh.https_args(Some("productpage"));
        args.extend([
            "-sS".to_owned(),
            "--http1.1".to_owned(),
            "-D".to_owned(),
            "-".to_owned(),
        ]);
        for _ in 0..3 {
            args.extend(["-o".to_owned(), "/dev/null".to_owned()]);
            args.push(mesh.inbound_url("/reviews/export"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tools::curl(&args, TOOL_LIMIT)
            .await
            .expect("curl is installed");
        let heads = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let statuses: Vec<&str> = heads
            .lines()
            .filter(|l| l.starts_with("http/"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(statuses, ["200", "200", "429"], "{heads}");
        assert!(heads.contains("retry-after:"), "{heads}");
        assert!(heads.contains("x-proxy-error: rate_limited"), "{heads}");

        // Each crate's counters are on the admin endpoint.
        let metrics = mesh.sidecar.metrics().await;
        for (needles, at_least) in [
            (&["proxy_tls_handshakes_total"][..], 4.0),
            (
                &["proxy_tls_handshake_failures_total", "client_certificate"],
                1.0,
            ),
            (&["proxy_filters_rbac_decisions_total", "denied"], 2.0),
            (
                &[
                    "proxy_filters_local_rate_limit_decisions_total",
                    "export",
                    "limited",
                ],
                1.0,
            ),
            (&["proxy_filters_connection_limit_accepted_total"], 5.0),
        ] {
            let sum = metric_sum(&metrics, needles);
            assert!(
                sum >= at_least,
                "{needles:?} = {sum}, want >= {at_least}\n{metrics}"
            );
        }

        // access_log: one JSON line per request on the sidecar's stdout, local replies
        // of the filters after it included (it is the outermost filter).
        let lines = |logs: String| -> Vec<serde_json::Value> {
            logs.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        assert!(
            eventually(Duration::from_secs(5), || lines(mesh.sidecar.logs()).len()
                >= 6)
            .await,
            "not within 5s: access log lines on stdout"
        );
        let logged = lines(mesh.sidecar.logs());
        let first = logged
            .iter()
            .find(|v| v["request_id"] == "smoke-1")
            .unwrap_or_else(|| panic!("no line of request smoke-1: {logged:?}"));
        assert_eq!(first["status"], 200, "{first}");
        assert_eq!(first["path"], "/reviews/1", "{first}");
        assert_eq!(first["protocol"], "HTTP/2.0", "{first}");
        let errors: Vec<&str> = logged
            .iter()
            .filter_map(|v| v["proxy_error"].as_str())
            .collect();
        assert_eq!(
            errors,
            ["rbac_denied", "rbac_denied", "rate_limited"],
            "{logged:?}"
        );
    })
    .await;
}

/// A Python that imports tongsuopy (installed by `scripts/deps/proxy-tls-guomi.sh`
/// into a venv, or a `site` directory for `PYTHONPATH`), or `None` after a loud
/// SKIPPED line.
fn tongsuo_python() -> Option<(PathBuf, Option<PathBuf>)> {
    let workspace = sidecar_dir().join("../..");
    let dest = std::env::var_os("PROXY_TLS_GUOMI_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| workspace.join(t).join("test-deps/tongsuo-venv"))
        })
        .unwrap_or_else(|| workspace.join("target/test-deps/tongsuo-venv"));
    let candidates = [
        (dest.join("bin/python3"), None),
        (PathBuf::from("python3"), Some(dest.join("site"))),
    ];
    for (python, path) in candidates {
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-c", "import tongsuopy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &path {
            cmd.env("PYTHONPATH", p);
        }
        if cmd.status().is_ok_and(|s| s.success()) {
            return Some((python, path));
        }
    }
    let banner = "\n==============================================\n\
                  SKIPPED: tongsuopy not installed (run scripts/deps/proxy-tls-guomi.sh)\n\
                  ==============================================\n";
    let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
    None
}

/// proxy-tls Guomi (RFC 8998) on the same inbound listener: a Tongsuo client offering
/// only TLS_SM4_GCM_SM3 gets the SM2 certificate, presents its own SM2 client
/// certificate (productpage's SPIFFE id, which rbac allows) and reaches the app.
#[tokio::test]
async fn inbound_guomi_client_with_an_sm2_certificate() {
    with_timeout(LIMIT, async {
        let Some((python, path)) = tongsuo_python() else {
            return;
        };
        let mesh = Mesh::start(None).await;
        let mut cmd = tokio::process::Command::new(python);
        if let Some(p) = path {
            cmd.env("PYTHONPATH", p);
        }
        let port = mesh.inbound.port().to_string();
        let (ca, crt, key) = (
            cert("sm2-ca.pem"),
            cert("sm2-productpage.pem"),
            cert("sm2-productpage.key"),
        );
        cmd.arg(sidecar_dir().join("../../proxy-tls/tests/interop/tongsuo_peer.py"))
            .args([
                "client", "--port", &port, "--ca", &ca, "--cert", &crt, "--key", &key,
            ])
            .args(["--http-get", "/reviews/guomi"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(TOOL_LIMIT, cmd.output())
            .await
            .expect("tongsuo_peer.py did not finish")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            mesh.sidecar.logs()
        );
        assert!(stdout.contains("CIPHER TLS_SM4_GCM_SM3"), "{stdout}");
        assert!(stdout.contains("PEER_SIGNATURE_TYPE SM2"), "{stdout}");
        assert!(stdout.contains("HTTP_STATUS HTTP/1.1 200"), "{stdout}");
        assert!(stdout.contains(r#""upstream":"app""#), "{stdout}");
        assert!(stdout.contains("/reviews/guomi"), "{stdout}");
    })
    .await;
}

/// proxy-tls origination: the outbound `reviews` cluster speaks mTLS to the inbound
/// listener with the sidecar's own workload certificate, which rbac allows.
#[tokio::test]
async fn outbound_mtls_origination_to_a_peer_sidecar() {
    with_timeout(LIMIT, async {
        let mesh = Mesh::start(None).await;
        let r = mesh.get(mesh.outbound, "reviews", "/reviews/7", &[]).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}\n{}",
            r.text(),
            mesh.sidecar.logs()
        );
        let echoed = Echoed::parse(&r.body);
        assert_eq!(echoed.upstream, "app");
        assert_eq!(echoed.uri, "/reviews/7");
        // It arrived over TLS (the inbound listener saw a secure connection).
        assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));
        // The peer's rbac still applies to calls over the mesh.
        let r = mesh.get(mesh.outbound, "reviews", "/admin", &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_metric(&mesh, &["proxy_tls_upstream_handshakes_total"], 1.0).await;
    })
    .await;
}

/// proxy-lb: maglev keeps a user on one endpoint and spreads users over both,
/// least_request answers, and both clusters run outlier detection and health checks.
#[tokio::test]
async fn outbound_maglev_least_request_and_cluster_extensions() {
    with_timeout(LIMIT, async {
        let mesh = Mesh::start(None).await;
        let mut seen = std::collections::BTreeMap::<String, Vec<String>>::new();
        for user in 0..16 {
            let id = format!("user-{user}");
            for _ in 0..3 {
                let r = mesh
                    .get(
                        mesh.outbound,
                        "ratings",
                        "/ratings/1",
                        &[("x-user-id", &id)],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                seen.entry(id.clone()).or_default().push(r.text());
            }
        }
        for (user, answers) in &seen {
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "{user} moved between endpoints: {answers:?}"
            );
        }
        let used: std::collections::BTreeSet<&str> = seen.values().map(|a| a[0].as_str()).collect();
        assert_eq!(
            used.len(),
            2,
            "16 users should use both ratings endpoints: {used:?}"
        );
        assert_metric(&mesh, &["proxy_lb_hash_picks_total"], 48.0).await;

        let r = mesh.get(mesh.outbound, "details", "/details/1", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.text().starts_with("details-"), "{}", r.text());

        // The admin /clusters page shows the balancers and the live extensions.
        let page = mesh.sidecar.admin_get("/clusters").await;
        assert_eq!(page.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        let cluster = |name: &str| {
            v["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no cluster {name} on /clusters: {v}"))
        };
        let ratings = cluster("ratings");
        assert_eq!(ratings["lb_policy"], "maglev");
        assert_eq!(cluster("details")["lb_policy"], "least_request");
        for name in ["ratings", "details"] {
            let c = cluster(name);
            let typed: Vec<&str> = c["extensions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x["typed"].as_str())
                .collect();
            assert_eq!(typed, ["outlier_detection", "health_check"], "{name}");
        }
        let addrs: Vec<String> = ratings["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(addrs, mesh.ratings.map(|a| a.to_string()));
        assert!(ratings["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["healthy"] == true));
    })
    .await;
}

/// proxy-lb outlier detection: five 5xx in a row eject a ratings endpoint (shown on
/// `/clusters`), and Maglev moves its users to the other endpoint meanwhile.
#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint() {
    with_timeout(LIMIT, async {
        let mesh = Mesh::start(None).await;
        let user = [("x-user-id", "user-ejected")];
        let home = mesh
            .get(mesh.outbound, "ratings", "/ratings/3", &user)
            .await
            .text();
        let other = if home == "ratings-a" {
            "ratings-b"
        } else {
            "ratings-a"
        };
        // The home endpoint fails this user's requests; the route retries 5xx, so each
        // request makes up to three attempts. Once ejected, the user lands elsewhere.
        let failing = [("x-user-id", "user-ejected"), ("x-fail", home.as_str())];
        let mut moved = false;
        for _ in 0..6 {
            let r = mesh
                .get(mesh.outbound, "ratings", "/ratings/3", &failing)
                .await;
            if r.status == StatusCode::OK {
                assert_eq!(r.text(), other);
                moved = true;
                break;
            }
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
        }
        assert!(moved, "{home} was never ejected\n{}", mesh.sidecar.logs());
        let r = mesh
            .get(mesh.outbound, "ratings", "/ratings/3", &user)
            .await;
        assert_eq!(r.text(), other, "an ejected endpoint got traffic");
        assert_metric(&mesh, &["proxy_lb_outlier_ejections_total"], 1.0).await;

        let page = mesh.sidecar.admin_get("/clusters").await;
        let v: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        let ratings = v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "ratings")
            .unwrap();
        let index = usize::from(home == "ratings-b");
        let endpoint = &ratings["endpoints"][index];
        assert_eq!(endpoint["address"], mesh.ratings[index].to_string());
        assert_eq!(endpoint["healthy"], false, "{endpoint}");
        assert_eq!(
            endpoint["health_flags"],
            serde_json::json!(["ejected"]),
            "{endpoint}"
        );
    })
    .await;
}

/// proxy-codec: the `auto` listener serves a Bolt call, a Dubbo call and HTTP on one
/// port; an unrouted Bolt service gets Bolt's NO_PROCESSOR.
#[tokio::test]
async fn rpc_auto_listener_serves_bolt_dubbo_and_http() {
    with_timeout(LIMIT, async {
        let mesh = Mesh::start(None).await;

        let f = rpc_roundtrip(
            Bolt,
            mesh.rpc,
            &bolt_call(7, "com.example.EchoService:1.0", "echo", "hi"),
        )
        .await;
        assert_eq!(f.request_id, 7);
        assert_eq!(f.status, bolt::status::SUCCESS, "{f:?}");
        assert_eq!(
            String::from_utf8_lossy(&f.content),
            "bolt-echo /com.example.EchoService:1.0/echo hi"
        );

        let f = rpc_roundtrip(
            Bolt,
            mesh.rpc,
            &bolt_call(8, "com.example.Nothing:1.0", "x", ""),
        )
        .await;
        assert_eq!(f.status, bolt::status::NO_PROCESSOR, "{f:?}");

        let f = rpc_roundtrip(Dubbo, mesh.rpc, &dubbo_call(9)).await;
        assert_eq!(f.request_id, 9);
        assert_eq!(f.status, dubbo::status::OK, "{f:?}");
        let text = String::from_utf8_lossy(&f.body);
        assert!(
            text.starts_with("dubbo-greeter /org.example.Greeter/hello"),
            "{text}"
        );

        let r = mesh.get(mesh.rpc, "ratings", "/ratings/2", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.text().starts_with("ratings-"), "{}", r.text());
        assert_metric(&mesh, &["proxy_codec_downstream_requests_total"], 3.0).await;
    })
    .await;
}

// === the third-party Bolt peers, when installed ===

/// Where `scripts/deps/proxy-codec.sh` puts node_modules (a relative
/// `CARGO_TARGET_DIR` counts from the workspace root, as the script takes it).
fn codec_node_modules() -> PathBuf {
    let workspace = sidecar_dir().join("../..");
    std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| workspace.join(t).join("test-deps/proxy-codec"))
        })
        .unwrap_or_else(|| workspace.join("target/test-deps/proxy-codec"))
        .join("node_modules")
}

fn interop_script(name: &str) -> PathBuf {
    sidecar_dir()
        .join("../../proxy-codec/tests/interop")
        .join(name)
}

/// sofa-rpc-node's Bolt client calls sofa-rpc-node's Bolt server through the
/// sidecar's `auto` listener.
#[tokio::test]
async fn sofa_bolt_client_through_the_auto_listener() {
    with_timeout(LIMIT, async {
        let modules = codec_node_modules();
        if !tools::installed("node") {
            return;
        }
        if !modules.join("sofa-rpc-node").is_dir() {
            let banner = format!(
                "\n==============================================\n\
                 SKIPPED: sofa-rpc-node missing in {} (run scripts/deps/proxy-codec.sh)\n\
                 ==============================================\n",
                modules.display()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
            return;
        }
        let node = |script: &str| {
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg(interop_script(script))
                .env("NODE_PATH", &modules)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            cmd
        };
        let mut server = node("server.js")
            .args(["--protocol", "bolt", "--name", "sofa"])
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(TOOL_LIMIT, lines.next_line())
            .await
            .expect("server.js did not print LISTENING")
            .unwrap()
            .unwrap_or_default();
        let port: u16 = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("server.js printed {line:?}"));
        let mesh = Mesh::start(Some(SocketAddr::from(([127, 0, 0, 1], port)))).await;

        let target = mesh.rpc.to_string();
        let mut client = node("bolt_client.js");
        client
            .args(["--target", &target, "--calls", "4", "--concurrency", "2"])
            .args(["--whoami", "com.example.EchoService"]);
        let client = client.output();
        let out = tokio::time::timeout(TOOL_LIMIT, client)
            .await
            .expect("bolt_client.js did not finish")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON report from bolt_client.js: {stdout}"));
        assert!(
            out.status.success() && report["ok"] == true,
            "{report}\n{}",
            mesh.sidecar.logs()
        );
        assert_eq!(report["calls"]["ok"], 4, "{report}");
        assert_eq!(
            report["whoami"]["com.example.EchoService"], "sofa",
            "{report}"
        );
        let _ = server.kill().await;
    })
    .await;
}
