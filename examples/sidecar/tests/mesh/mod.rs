//! The sidecar running `configs/mesh.yaml` with its upstreams, the RPC frames and
//! the third-party peers, shared by the `capabilities_*` tests.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

pub(crate) use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

pub(crate) use crate::common::*;
pub(crate) use bytes::{Bytes, BytesMut};
pub(crate) use http::{Method, StatusCode};
pub(crate) use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    Bolt, Dubbo, Protocol,
};
pub(crate) use proxy_test_support::{
    client, eventually, free_addr,
    python::{test_deps_dir, Python},
    rpc::{self, read_frame},
    temp::TempDir,
    tools,
    upstream::{response, Echoed},
    with_timeout, Upstream,
};
pub(crate) use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

pub(crate) const LIMIT: Duration = Duration::from_secs(30);
pub(crate) const TOOL_LIMIT: Duration = Duration::from_secs(10);

// The addresses written in configs/mesh.yaml; the tests replace each with a free port.
pub(crate) const ADMIN: &str = "127.0.0.1:15000";
pub(crate) const INBOUND: &str = "127.0.0.1:15006";
pub(crate) const OUTBOUND: &str = "127.0.0.1:15001";
pub(crate) const RPC: &str = "127.0.0.1:12200";
pub(crate) const APP: &str = "127.0.0.1:9080";
pub(crate) const RATINGS: [&str; 2] = ["127.0.0.1:9081", "127.0.0.1:9082"];
pub(crate) const DETAILS: [&str; 2] = ["127.0.0.1:9083", "127.0.0.1:9084"];
pub(crate) const BOLT_UPSTREAM: &str = "127.0.0.1:12220";
pub(crate) const DUBBO_UPSTREAM: &str = "127.0.0.1:20880";

/// The SNI name the inbound listener's certificate carries.
pub(crate) const REVIEWS_HOST: &str = "reviews.default.svc.cluster.local";

pub(crate) fn sidecar_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn mesh_path() -> PathBuf {
    sidecar_dir().join("configs/mesh.yaml")
}

/// A file of the test certificates, as an absolute path string.
pub(crate) fn cert(name: &str) -> String {
    sidecar_dir()
        .join("configs/certs")
        .join(name)
        .display()
        .to_string()
}

/// `yaml` (configs/mesh.yaml's text) with its certificate paths, relative to
/// configs/, made absolute: for a copy written elsewhere.
pub(crate) fn absolute_certs(yaml: &str) -> String {
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
pub(crate) fn mesh_yaml(addresses: &[(&str, SocketAddr)]) -> String {
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
pub(crate) fn bolt_call(id: u32, service: &str, method: &str, content: &'static str) -> BoltFrame {
    BoltFrame {
        timeout: 3000,
        ..BoltFrame::sofa_request(id, service, method, content)
    }
}

/// A Dubbo (hessian2) two-way call of `org.example.Greeter.hello("world")`.
pub(crate) fn dubbo_call(id: u64) -> DubboFrame {
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
pub(crate) async fn rpc_roundtrip<P: Protocol>(
    p: P,
    addr: SocketAddr,
    frame: &P::Frame,
) -> P::Frame {
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
pub(crate) fn ratings_upstream(name: &'static str) -> Upstream {
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
pub(crate) struct Mesh {
    pub(crate) sidecar: Sidecar,
    pub(crate) inbound: SocketAddr,
    pub(crate) outbound: SocketAddr,
    pub(crate) rpc: SocketAddr,
    pub(crate) ratings: [SocketAddr; 2],
    pub(crate) _upstreams: Vec<Upstream>,
    pub(crate) _rpc_peers: Vec<Upstream>,
}

impl Mesh {
    /// Starts the upstreams (the local app echoes, ratings and details answer their
    /// name, Rust Bolt and Dubbo peers) and the sidecar; `bolt` replaces the Rust Bolt
    /// peer with another server.
    pub(crate) async fn start(bolt: Option<SocketAddr>) -> Self {
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
    pub(crate) fn https_args(&self, identity: Option<&str>) -> Vec<String> {
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

    pub(crate) fn inbound_url(&self, path: &str) -> String {
        format!("https://{REVIEWS_HOST}:{}{path}", self.inbound.port())
    }

    /// One curl request to the inbound listener.
    pub(crate) async fn inbound_get(
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
    pub(crate) async fn get(
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
pub(crate) async fn assert_metric(mesh: &Mesh, needles: &[&str], at_least: f64) {
    let metrics = mesh.sidecar.metrics().await;
    let sum = metric_sum(&metrics, needles);
    assert!(
        sum >= at_least,
        "{needles:?} = {sum}, want >= {at_least}\n{metrics}"
    );
}

// === (1) the committed config validates ===

/// A Python that imports tongsuopy (installed by `scripts/deps/proxy-tls-guomi.sh`
/// into a venv, or a `site` directory for `PYTHONPATH`), or `None` after a loud
/// SKIPPED line.
pub(crate) fn tongsuo_python() -> Option<Python> {
    Python::find("tongsuopy", "PROXY_TLS_GUOMI_VENV", "tongsuo-venv")
}

// === the third-party Bolt peers, when installed ===

/// Where `scripts/deps/proxy-codec.sh` puts node_modules (a relative
/// `CARGO_TARGET_DIR` counts from the workspace root, as the script takes it).
pub(crate) fn codec_node_modules() -> PathBuf {
    std::env::var_os("PROXY_CODEC_NODE_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_deps_dir().join("proxy-codec"))
        .join("node_modules")
}

pub(crate) fn interop_script(name: &str) -> PathBuf {
    sidecar_dir()
        .join("../../proxy-codec/tests/interop")
        .join(name)
}
