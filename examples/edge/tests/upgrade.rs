//! Hot upgrade of the edge: the embedded default's listener and filters (RBAC deny
//! list, rate limits, adaptive concurrency, LDC zone routing, Maglev in the zone)
//! with its TLS filter and its HTTP/3 section taken out, since TLS connections drain
//! on an upgrade (their session state stays in the old process): a plain keep-alive
//! client in the middle of a request stream keeps its one connection through an
//! upgrade by `--upgrade` and one by `SIGUSR2`, and sees no error. The whole
//! default, TLS and HTTP/3 on, is upgraded in `upgrade_h3.rs`.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{default_yaml, EDGE};
use http::StatusCode;
use proxy_test_support::{
    free_addr,
    hot_upgrade::{log_field, ForeignProcess, ProxyProcess, RequestStream},
    temp::TempDir,
    with_timeout, Upstream,
};

/// `yaml` without the lines from the one starting with `from` up to (not
/// including) the one starting with `to`.
fn cut(yaml: &str, from: &str, to: &str) -> String {
    let start = yaml.find(from).unwrap_or_else(|| panic!("no {from:?}"));
    let end = start
        + yaml[start..]
            .find(to)
            .unwrap_or_else(|| panic!("no {to:?}"));
    format!("{}{}", &yaml[..start], &yaml[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_stream_survives_two_upgrades() {
    with_timeout(Duration::from_secs(90), async {
        let backends = ["z1a", "z1b", "z2a", "z2b"].map(Upstream::echo);
        let (listen, admin) = (free_addr(), free_addr());
        let dir = TempDir::new("edge-upgrade");
        let yaml = default_yaml(
            listen,
            admin,
            &dir.join("certs"),
            backends.each_ref().map(|b| b.addr),
        );
        let yaml = cut(&yaml, "      - typed: tls\n", "    http_filters:\n");
        let yaml = cut(&yaml, "# HTTP/3 on the same port", "clusters:\n");
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

        // uid 7 is zone z1's: every answer comes from z1a or z1b.
        let stream = RequestStream::start(
            listen,
            "/hello",
            &[("x-uid", "7")],
            StatusCode::OK,
            Duration::from_millis(5),
        );
        assert!(
            stream.wait_more(20, Duration::from_secs(10)).await,
            "{}",
            first.logs()
        );

        // The operator's way: the new binary with the same flags plus --upgrade.
        let mut with_flag = args.to_vec();
        with_flag.push("--upgrade");
        let mut second = ProxyProcess::start(EDGE, "second", dir.path(), &with_flag);
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "first exit {status}\n{}", first.logs());
        assert!(second.running(), "{}", second.logs());
        assert!(second.logs().contains("took over"), "{}", second.logs());
        assert!(
            stream.wait_more(30, Duration::from_secs(10)).await,
            "{}",
            second.logs()
        );

        // SIGUSR2: the second starts the binary itself.
        second.signal("USR2");
        let mut pid = None;
        let started = proxy_test_support::eventually(Duration::from_secs(10), || {
            pid = log_field(&second.logs(), "SIGUSR2: started the new process", "pid");
            pid.is_some()
        })
        .await;
        assert!(started, "{}", second.logs());
        let third = ForeignProcess(pid.unwrap().parse().unwrap());
        let status = second.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "second exit {status}\n{}", second.logs());
        assert!(third.running(), "{}", second.logs());
        assert!(
            stream.wait_more(30, Duration::from_secs(10)).await,
            "{}",
            second.logs()
        );

        let report = stream.stop().await;
        assert!(
            report.failures.is_empty(),
            "{:?}\n{}",
            report.failures,
            second.logs()
        );
        assert_eq!(
            report.connects,
            1,
            "the connection was reopened\n{}",
            second.logs()
        );
        let zones: u64 = backends[2..].iter().map(Upstream::hits).sum();
        assert_eq!(zones, 0, "a z1 uid was answered by z2");
    })
    .await;
}
