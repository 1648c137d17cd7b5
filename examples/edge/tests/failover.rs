//! Zone failover: the embedded default run with `--config`, its four backends the
//! test's own (two per zone). A uid of zone z1 lands in z1; once both z1 backends are
//! gone the same request is served by z2 at once (the connect failure retried in the
//! next zone of the failover chain), and the admin endpoint counts it.
//!
//! Over HTTP/1.1: an HTTP/2 request (even one without a body) is not moved at once
//! (its body does not count as empty or buffered); it gets the 502/503 until three
//! connect failures hold z1 out of the chain for 5 s.

use crate::common;

use common::{default_yaml, status, Edge, LIMIT};
use proxy_test_support::{free_addr, temp::TempDir, tools, with_timeout, Upstream};

#[tokio::test]
async fn a_dead_zone_fails_over_to_the_other() {
    with_timeout(LIMIT, async {
        let mut z1 = [Upstream::named("z1-a"), Upstream::named("z1-b")];
        let z2 = [Upstream::named("z2-a"), Upstream::named("z2-b")];
        let (listen, admin) = (free_addr(), free_addr());
        let dir = TempDir::new("edge-failover");
        let yaml = default_yaml(
            listen,
            admin,
            &dir.join("certs"),
            [z1[0].addr, z1[1].addr, z2[0].addr, z2[1].addr],
        );
        let file = dir.join("edge.yaml");
        std::fs::write(&file, yaml).unwrap();
        let edge = Edge::with_config(listen, admin, dir, &file);

        let Some(out) = edge.curl("/pay", &["--http1.1", "-H", "x-uid: 7"]).await else {
            return;
        };
        assert_eq!(status(&out), 200, "{out}");
        assert!(out.contains("\r\n\r\nz1-"), "uid 7 belongs to z1: {out}");

        for up in &mut z1 {
            up.stop();
        }
        for _ in 0..3 {
            let out = edge
                .curl("/pay", &["--http1.1", "-H", "x-uid: 7"])
                .await
                .unwrap();
            assert_eq!(status(&out), 200, "{out}");
            assert!(out.contains("\r\n\r\nz2-"), "z1 is down, z2 serves: {out}");
        }
        assert!(z2[0].hits() + z2[1].hits() >= 3);
        // Over HTTP/2 too, now that z1 is held out of the chain.
        let out = edge.curl("/pay", &["-H", "x-uid: 7"]).await.unwrap();
        assert!(
            out.starts_with("HTTP/2 200") && out.contains("\r\n\r\nz2-"),
            "{out}"
        );

        let metrics = format!("http://{admin}/stats/prometheus");
        let text = tools::curl(&["-s", &metrics], std::time::Duration::from_secs(5))
            .await
            .unwrap()
            .stdout_text();
        let failovers = text
            .lines()
            .filter(|l| l.starts_with("proxy_lb_zone_") && !l.contains("} 0"))
            .filter(|l| l.contains("failover") || l.contains("retries"))
            .count();
        assert!(failovers > 0, "no failover counted:\n{text}");
    })
    .await;
}
