//! A control plane that floods (`tests/control_plane/flood_server.py`, Python,
//! grpcio + xds-protos) over ADS, state of the world and delta: 10,000 EDS and
//! RDS updates at 2,000 a second, about one in a hundred refused by design, while
//! requests keep going through the proxy, over a listener and routes from LDS and
//! RDS and over a static one. Not one request fails; every response is answered,
//! each refused one by a NACK naming the field; what runs at the end is the last
//! update of each type; the config is swapped far fewer times than updates came
//! (`xds.apply_min_interval` coalesces them); the process's memory stays bounded.
//! Skipped loudly when the Python packages are missing (`scripts/deps/proxy-xds.sh`
//! installs them).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use http::Method;
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client::{self, H1Client},
    eventually_async, free_addr,
    ports::any_port,
    prometheus::sample,
    python::Python,
    upstream::response,
    with_timeout, yaml, TestServer, Upstream,
};
use proxy_xds::{ApiType, BackoffConfig, XdsAdmin, XdsClient, XdsConfig, XdsStatus};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
    sync::watch,
};

/// Updates in the flood, and how many a second.
const UPDATES: u64 = 10_000;
const RATE: u64 = 2_000;
/// One update in this many is refused by design (a prime: EDS and RDS both).
const BAD_EVERY: u64 = 97;
const LIMIT: Duration = Duration::from_secs(90);
/// How long one event of the control plane may take.
const EVENT_WAIT: Duration = Duration::from_secs(30);
/// Growth of the resident set during the flood that counts as unbounded.
const RSS_GROWTH_LIMIT: u64 = 64 << 20;

/// The flooding control plane as a child process, killed when dropped.
struct FloodPlane {
    port: u16,
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl FloodPlane {
    /// Starts it; `None` when Python lacks the packages (the test then skips).
    async fn start() -> Option<Self> {
        let python = Python::find(
            "grpc, envoy.service.discovery.v3.ads_pb2_grpc",
            "PROXY_XDS_VENV",
            "xds-venv",
        )?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control_plane/flood_server.py");
        let mut cmd = python.tokio_command();
        cmd.arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the control plane starts");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut plane = Self {
            port: 0,
            _child: child,
            stdin,
            lines,
        };
        let listening = plane.event("listening").await;
        plane.port = u16::try_from(listening["port"].as_u64().expect("port")).expect("port");
        Some(plane)
    }

    async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("the control plane reads its commands");
        self.stdin.flush().await.expect("flush");
    }

    /// The next event named `name`, skipping the others.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let line = tokio::time::timeout(EVENT_WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {name:?} event within {EVENT_WAIT:?}"))
                .expect("the control plane's output")
                .expect("the control plane is running");
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if event["event"] == name {
                    return event;
                }
            }
        }
    }
}

/// A proxy with a static listener `main` to cluster `a`, asking the control plane
/// at `port` for clusters, endpoints, listeners and routes over `api_type`, its
/// client on a thread of its own, and the client's status.
fn proxy(
    port: u16,
    api_type: ApiType,
    admin: SocketAddr,
) -> (TestServer, proxy_xds::XdsThread, watch::Receiver<XdsStatus>) {
    let mut doc = yaml::config(&[yaml::listener("main", "a", &[])], &[]);
    doc.push_str(&format!("admin: {{ address: \"{admin}\" }}\n"));
    let base = Config::from_yaml(&doc).expect("base config");
    let mut xds = XdsConfig::new(format!("127.0.0.1:{port}"), "flood-node");
    xds.listeners = true;
    xds.api_type = api_type;
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base);
    let status = client.status();
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let server = XdsAdmin::new(&client).install(server);
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    let thread = client.spawn(server).expect("the client thread starts");
    (proxy, thread, status)
}

/// The resident set of this process (the proxy and its client run in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// An upstream answering 200 and `name`, counting requests without recording
/// them ([`Upstream::named`] keeps every request, which would be the memory this
/// test watches grow).
fn unrecorded(name: &'static str) -> Upstream {
    Upstream::hyper(move |_, stats| async move {
        stats.hit();
        response(200, name)
    })
}

/// Requests sent, failed, and the slowest, over one connection per listener.
#[derive(Default)]
struct Load {
    sent: AtomicU64,
    failed: AtomicU64,
    slowest_ms: AtomicU64,
}

/// Sends GETs to `addr` (paths `/` and `/v1`) until `stop`, every answer
/// expected a 200 from one of the upstreams.
async fn keep_sending(addr: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let mut client = H1Client::new(addr);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let path = if n.is_multiple_of(2) { "/" } else { "/v1" };
        let start = Instant::now();
        let result = client
            .request(Method::GET, path, &[], Default::default())
            .await;
        let took = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        load.slowest_ms.fetch_max(took, Ordering::Relaxed);
        load.sent.fetch_add(1, Ordering::Relaxed);
        let ok = matches!(&result, Ok(r) if r.status == 200 && r.text().starts_with('u'));
        if !ok {
            load.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "request to {addr}{path} failed: {:?}",
                result.map(|r| r.status)
            );
        }
    }
}

/// Whether every response the client received was answered, twice in a row a
/// few hundred milliseconds apart with nothing new.
async fn settled(status: &watch::Receiver<XdsStatus>) -> bool {
    let counts = |s: &XdsStatus| -> Vec<(u64, u64)> {
        s.types
            .values()
            .map(|t| (t.received, t.acks + t.nacks))
            .collect()
    };
    let before = counts(&status.borrow());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = counts(&status.borrow());
    before == after
        && after
            .iter()
            .all(|(received, answered)| received == answered)
}

async fn floods(api_type: ApiType) {
    let Some(mut cp) = FloodPlane::start().await else {
        return;
    };
    let (u1, u2) = (unrecorded("u1"), unrecorded("u2"));
    let (one, two) = (u1.addr.to_string(), u2.addr.to_string());
    let variants = json!([[one], [two], [one, two]]);
    let admin = free_addr();
    let (proxy, xds, status) = proxy(cp.port, api_type, admin);

    cp.command(json!({
        "op": "set", "version": "0",
        "clusters": [{"name": "a"}],
        "endpoints": {"a": [one, two]},
        "listeners": [{"name": "web", "address": any_port().to_string(), "rds": "r"}],
        "routes": {"r": [{"prefix": "/", "cluster": "a"}]},
    }))
    .await;
    let mut watching = status.clone();
    watching
        .wait_for(|s| s.endpoint_version == "0" && s.route_version == "0")
        .await
        .expect("the client runs");
    let (web, main) = (proxy.addr("web"), proxy.addr("main"));
    assert_eq!(client::get(web, "/", &[]).await.status, 200);

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = [web, main, web]
        .into_iter()
        .map(|addr| tokio::spawn(keep_sending(addr, load.clone(), stop.clone())))
        .collect();
    let baseline = rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let applied_before = status.borrow().applied;

    cp.command(json!({
        "op": "flood", "count": UPDATES, "rate": RATE, "types": ["eds", "rds"],
        "endpoints": {"a": variants}, "routes": "r", "bad_every": BAD_EVERY,
    }))
    .await;
    let flooded = cp.event("flooded").await;
    assert!(
        eventually_async(Duration::from_secs(30), || settled(&status)).await,
        "the client answered everything it received: {:#?}",
        status.borrow().types
    );
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("a sender");
    }
    sampler.await.expect("the sampler");

    // Not one request failed, none stalled.
    let sent = load.sent.load(Ordering::Relaxed);
    assert_eq!(load.failed.load(Ordering::Relaxed), 0, "of {sent} requests");
    assert!(sent > 100, "{sent} requests during the flood");
    let slowest = load.slowest_ms.load(Ordering::Relaxed);
    assert!(slowest < 2_000, "a request took {slowest} ms");

    // Every response answered: the refused ones by a NACK naming the field.
    cp.command(json!({"op": "report"})).await;
    let report = cp.event("report").await;
    let answers: HashMap<&str, &Vec<Value>> = report["answers"]
        .as_object()
        .expect("answers")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_array().expect("a list")))
        .collect();
    let mut last_good: BTreeMap<&str, &str> = BTreeMap::new();
    let (mut bad, mut total) = (0, 0);
    for entry in report["sent"].as_array().expect("sent") {
        let (nonce, ty) = (
            entry[0].as_str().expect("nonce"),
            entry[1].as_str().expect("type"),
        );
        let refused_by_design = entry[3].as_bool().unwrap_or(false);
        total += 1;
        let answer = answers
            .get(nonce)
            .and_then(|a| a.first())
            .unwrap_or_else(|| panic!("{ty} response {nonce} was not answered"));
        let error = answer[1].as_str();
        if refused_by_design {
            bad += 1;
            let field = if ty == "eds" {
                "port_value"
            } else {
                "safe_regex.regex"
            };
            assert_eq!(answer[0], "nack", "{ty} {nonce}: {answer:?}");
            assert!(
                error.is_some_and(|e| e.contains(field)),
                "{ty} {nonce}: {error:?} names {field}"
            );
        } else {
            assert_eq!(answer[0], "ack", "{ty} {nonce}: {error:?}");
            last_good.insert(ty, entry[2].as_str().expect("version"));
        }
    }
    assert!(total >= UPDATES, "{total} responses sent");
    assert!(bad >= UPDATES / BAD_EVERY, "{bad} refused");

    // What runs is the last update of each type.
    let s = status.borrow().clone();
    assert_eq!(
        Some(s.endpoint_version.as_str()),
        last_good.get("eds").copied()
    );
    assert_eq!(
        Some(s.route_version.as_str()),
        last_good.get("rds").copied()
    );
    let last = &flooded["last"];
    let eds_index: usize = last["eds"].as_str().expect("eds")[1..]
        .parse()
        .expect("index");
    let rds_index: usize = last["rds"].as_str().expect("rds")[1..]
        .parse()
        .expect("index");
    let config = proxy.server().snapshot().config.clone();
    let a = config
        .clusters
        .iter()
        .find(|c| c.name == "a")
        .expect("cluster a");
    let mut live: Vec<String> = a
        .endpoints
        .iter()
        .map(|e| e.address().to_string())
        .collect();
    live.sort();
    let mut want: Vec<String> = variants[eds_index % 3]
        .as_array()
        .expect("variant")
        .iter()
        .map(|v| v.as_str().expect("address").to_owned())
        .collect();
    want.sort();
    assert_eq!(live, want);
    let listener = config
        .listeners
        .iter()
        .find(|l| l.name == "web")
        .expect("web");
    let routes = serde_json::to_string(&listener.virtual_hosts).expect("routes");
    assert!(routes.contains(&format!("\"/v{rds_index}\"")), "{routes}");

    // Far fewer config swaps than updates, and the metrics say so.
    let swaps = s.applied - applied_before;
    assert!(swaps * 10 < UPDATES, "{swaps} swaps for {UPDATES} updates");
    let stats = client::get(admin, "/stats/prometheus", &[]).await.text();
    let series = |ty: &str, result: &str| {
        sample(
            &stats,
            &format!("proxy_xds_updates_total{{type=\"{ty}\",result=\"{result}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {ty} {result} series in\n{stats}"))
    };
    for ty in ["endpoints", "routes"] {
        let (received, applied, coalesced) = (
            series(ty, "received"),
            series(ty, "applied"),
            series(ty, "coalesced"),
        );
        let nacks = sample(
            &stats,
            &format!("proxy_xds_responses_total{{type=\"{ty}\",result=\"nack\"}}"),
        )
        .unwrap_or(0.0);
        assert!(
            coalesced > applied,
            "{ty}: {coalesced} coalesced, {applied} applied"
        );
        assert_eq!(received, applied + coalesced + nacks, "{ty}");
    }

    // Memory stayed bounded.
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(
        growth < RSS_GROWTH_LIMIT,
        "RSS grew by {} MiB during the flood",
        growth >> 20
    );
    eprintln!(
        "{api_type:?}: {total} responses in {:.1}s, {swaps} swaps, {sent} requests, \
         slowest {slowest} ms, RSS +{} MiB",
        flooded["seconds"].as_f64().unwrap_or_default(),
        growth >> 20
    );
    xds.stop();
    cp.command(json!({"op": "quit"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_of_the_world_flood_is_coalesced_and_every_response_answered() {
    with_timeout(LIMIT, floods(ApiType::Sotw)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_flood_is_coalesced_and_every_response_answered() {
    with_timeout(LIMIT, floods(ApiType::Delta)).await;
}
