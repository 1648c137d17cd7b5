//! Hot upgrade of the edge on its embedded default, TLS and HTTP/3 on: while PyPI's
//! aioquic makes HTTP/3 requests one after another and Python's `http.client` does
//! the same over TLS on a keep-alive connection, a second process takes over with
//! `--upgrade` and a third from it by `SIGUSR2`. Each new process starts its HTTP/3
//! listener on the UDP socket the old one handed over and forwards it the datagrams
//! of its connections; the old one sends GOAWAY, drains and exits 0. No request
//! fails: the HTTP/3 client moves to a new connection after each GOAWAY, and the
//! TLS client reconnects when its connection drains (TLS session state stays in the
//! old process), sending again, once, a request the old process closed the idle
//! connection under (RFC 9112 section 9.3.1), as browsers do. Skipped loudly without
//! aioquic (`scripts/deps/proxy-quic.sh`).

#![allow(clippy::unwrap_used)]

use crate::common;

use crate::aioquic_support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aioquic_support::{json_lines, Aioquic};
use common::{default_yaml, EDGE};
use proxy_test_support::{
    free_addr,
    hot_upgrade::{log_field, ForeignProcess, ProxyProcess},
    python::Python,
    temp::TempDir,
    tools::{self, ToolOutput},
    with_timeout, Upstream,
};

const LIMIT: Duration = Duration::from_secs(150);

/// Python's `http.client` over TLS: `GET /tls/N` one after another on a keep-alive
/// connection to 127.0.0.1:PORT as `localhost` (verified against CA), PAUSE_MS
/// between answers, until the file STOP exists; writes the count answered to
/// PROGRESS and prints {"ok", "failed", "connects", "resent"}. A request the server
/// closed a used idle connection under (nothing of an answer read) is sent again
/// once on a new connection; any other error is a failure.
const TLS_CLIENT: &str = r#"
import http.client, json, os, socket, ssl, sys, time
port, ca, progress, stop, pause = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
stats = {"ok": 0, "failed": [], "connects": 0, "resent": 0}

class Conn(http.client.HTTPSConnection):
    served = 0
    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.served = 0
        stats["connects"] += 1

CLOSED = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
conn = Conn("localhost", port, timeout=10)

def get(n):
    conn.request("GET", f"/tls/{n}", headers={"x-uid": "7"})
    answer = conn.getresponse()
    answer.read()
    return answer.status

n = 0
deadline = time.monotonic() + 120
while not os.path.exists(stop) and time.monotonic() < deadline:
    n += 1
    try:
        try:
            status = get(n)
        except CLOSED:
            if conn.served == 0:
                raise
            conn.close()
            stats["resent"] += 1
            status = get(n)
    except Exception as e:
        stats["failed"].append(f"request {n}: {e!r}")
        conn.close()
        continue
    if status == 200:
        stats["ok"] += 1
        conn.served += 1
        with open(progress + ".tmp", "w") as f:
            f.write(str(stats["ok"]))
        os.replace(progress + ".tmp", progress)
    else:
        stats["failed"].append(f"request {n}: status {status}")
    time.sleep(pause / 1000)
conn.close()
print(json.dumps(stats), flush=True)
"#;

/// How many answers a client has counted in `progress`.
fn answered(progress: &Path) -> u64 {
    std::fs::read_to_string(progress)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until each client of `progress` has `more` answers more than now.
async fn wait_more(progress: &[&Path], more: u64, logs: impl Fn() -> String) {
    let targets: Vec<u64> = progress.iter().map(|p| answered(p) + more).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (p, target) in progress.iter().zip(targets) {
        while answered(p) < target {
            assert!(
                Instant::now() < deadline,
                "{}: {} answers, waiting for {target}\n{}",
                p.display(),
                answered(p),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `python` with `args` (a script and its arguments), at most `limit`, off the
/// runtime.
async fn run_python(python: Python, args: Vec<String>, limit: Duration) -> ToolOutput {
    let mut cmd = python.command();
    cmd.args(args);
    tokio::task::spawn_blocking(move || tools::run_blocking(cmd, b"", limit))
        .await
        .unwrap()
}

/// Checks, in the logs of a hand-off, that the new process took the UDP socket over
/// and the old one handed its listener off and was forwarded datagrams.
fn assert_handed_over(old_logs: &str, new_logs: &str) {
    assert!(
        new_logs.contains("QUIC sockets taken over sockets=1") && new_logs.contains("took over"),
        "the UDP socket was not taken over\n{new_logs}"
    );
    assert!(
        old_logs.contains("QUIC listener handed off"),
        "no hand-off\n{old_logs}"
    );
    let forwarded = log_field(
        old_logs,
        "QUIC listener drained after the hand-off",
        "received_forwarded",
    )
    .and_then(|n| n.parse::<u64>().ok());
    assert!(forwarded > Some(0), "nothing forwarded\n{old_logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_and_tls_clients_keep_their_requests_going_through_two_upgrades() {
    let Some(aioquic) = Aioquic::find("the edge HTTP/3 hot upgrade test") else {
        return;
    };
    let Some(python) = Python::find("ssl", "PROXY_QUIC_AIOQUIC_VENV", "aioquic-venv") else {
        return;
    };
    with_timeout(LIMIT, async {
        let backends = ["z1a", "z1b", "z2a", "z2b"].map(Upstream::echo);
        let (listen, admin) = (free_addr(), free_addr());
        let dir = TempDir::new("edge-upgrade-h3");
        let certs = dir.join("certs");
        let yaml = default_yaml(listen, admin, &certs, backends.each_ref().map(|b| b.addr));
        assert!(yaml.contains("quic:") && yaml.contains("typed: tls"));
        let config = dir.join("edge.yaml");
        std::fs::write(&config, yaml).unwrap();
        let socket = dir.join("upgrade.sock");
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--upgrade-socket",
            socket.to_str().unwrap(),
        ];
        let mut first = ProxyProcess::start(EDGE, "first", dir.path(), &args);
        first.wait_ready(admin).await;
        let h3_started = proxy_test_support::eventually(Duration::from_secs(10), || {
            first.logs().contains("http/3 listener started")
        })
        .await;
        assert!(h3_started, "{}", first.logs());

        let ca: PathBuf = certs.join("edge-ca.pem");
        let (h3_progress, h3_stop) = (dir.join("h3-progress"), dir.join("h3-stop"));
        let h3_args = [
            "--port",
            &listen.port().to_string(),
            "--ca",
            ca.to_str().unwrap(),
            "--progress",
            h3_progress.to_str().unwrap(),
            "--stop",
            h3_stop.to_str().unwrap(),
            "--pause-ms",
            "10",
        ]
        .map(String::from)
        .to_vec();
        let h3 = tokio::spawn({
            let aioquic = aioquic.clone();
            async move {
                aioquic
                    .run("h3_upgrade_client.py", h3_args, Duration::from_secs(130))
                    .await
            }
        });
        let (tls_progress, tls_stop) = (dir.join("tls-progress"), dir.join("tls-stop"));
        let tls_args = [
            "-c",
            TLS_CLIENT,
            &listen.port().to_string(),
            ca.to_str().unwrap(),
            tls_progress.to_str().unwrap(),
            tls_stop.to_str().unwrap(),
            "10",
        ]
        .map(String::from)
        .to_vec();
        let tls = tokio::spawn(run_python(python, tls_args, Duration::from_secs(130)));
        let progress = [h3_progress.as_path(), tls_progress.as_path()];
        wait_more(&progress, 20, || first.logs()).await;

        // The operator's way: the new binary with the same flags plus --upgrade.
        let mut with_flag = args.to_vec();
        with_flag.push("--upgrade");
        let mut second = ProxyProcess::start(EDGE, "second", dir.path(), &with_flag);
        let status = first.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "first exit {status}\n{}", first.logs());
        assert!(second.running(), "{}", second.logs());
        assert_handed_over(&first.logs(), &second.logs());
        wait_more(&progress, 30, || second.logs()).await;

        // SIGUSR2: the second starts the binary itself (its logs go to the second's).
        second.signal("USR2");
        let mut pid = None;
        let started = proxy_test_support::eventually(Duration::from_secs(10), || {
            pid = log_field(&second.logs(), "SIGUSR2: started the new process", "pid");
            pid.is_some()
        })
        .await;
        assert!(started, "{}", second.logs());
        let third = ForeignProcess(pid.unwrap().parse().unwrap());
        let status = second.wait_exit(Duration::from_secs(30)).await;
        let logs = second.logs();
        assert!(status.success(), "second exit {status}\n{logs}");
        assert!(third.running(), "{logs}");
        assert_eq!(
            logs.matches("QUIC sockets taken over sockets=1").count(),
            2,
            "the third did not take the UDP socket over\n{logs}"
        );
        wait_more(&progress, 30, || second.logs()).await;

        std::fs::write(&h3_stop, b"stop").unwrap();
        std::fs::write(&tls_stop, b"stop").unwrap();
        let (h3, tls) = (h3.await.unwrap(), tls.await.unwrap());
        assert!(h3.ok(), "aioquic client: {}\n{}", h3.text(), second.logs());
        assert!(tls.ok(), "TLS client: {}\n{}", tls.text(), second.logs());
        let h3 = json_lines(&h3).pop().expect("the HTTP/3 client's report");
        let tls = json_lines(&tls).pop().expect("the TLS client's report");
        eprintln!("through two upgrades: HTTP/3 {h3}; HTTP/1.1 over TLS {tls}");
        assert_eq!(h3["failed"], serde_json::json!([]), "{h3}");
        let connections = h3["connections"].as_array().expect("connections");
        assert!(connections.len() >= 3, "{h3}");
        for told in &connections[..2] {
            assert_eq!(told["goaway"], true, "told to go away: {h3}");
        }
        assert_eq!(tls["failed"], serde_json::json!([]), "{tls}");
        assert!(tls["ok"].as_u64() >= Some(80), "{tls}");
    })
    .await;
}
