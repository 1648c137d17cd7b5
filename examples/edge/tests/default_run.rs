//! The edge binary on its embedded default (free ports): HTTP/1.1 and HTTP/2 over TLS
//! with curl, zone routing by uid and by cookie, `Alt-Svc`, the defence posture (431
//! for an oversized head, 403 from the RBAC deny list), the access log and the admin
//! metrics (handshakes signed on the offload engines, the deny list's decisions).

use crate::common;

use common::{status, Edge, LIMIT};
use proxy_test_support::with_timeout;

/// The README's first curl line: uid 7 lands in zone z1, over HTTP/2 (ALPN) and
/// HTTP/1.1, with `Alt-Svc` and the zone cookie set.
#[tokio::test]
async fn h1_and_h2_over_tls_route_by_uid() {
    with_timeout(LIMIT, async {
        let edge = Edge::default_run();
        let Some(h2) = edge.curl("/hello", &["-H", "x-uid: 7"]).await else {
            return;
        };
        assert!(h2.starts_with("HTTP/2 200"), "{h2}");
        assert!(h2.contains("zone z1 backend"), "{h2}");
        assert!(h2.contains("set-cookie: zone=z1"), "{h2}");
        let port = edge.listen.port();
        assert!(h2.contains(&format!("alt-svc: h3=\":{port}\"")), "{h2}");

        let h1 = edge
            .curl("/hello", &["--http1.1", "-H", "x-uid: 77"])
            .await
            .unwrap();
        assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
        assert!(h1.contains("zone z2 backend"), "{h1}");

        // Without a uid the zone cookie decides.
        for _ in 0..3 {
            let out = edge.curl("/c", &["-b", "zone=z2"]).await.unwrap();
            assert!(out.contains("zone z2 backend"), "{out}");
            assert!(!out.contains("set-cookie"), "cookie already right: {out}");
        }
        // Maglev inside the zone: one uid keeps its backend.
        let first = edge.curl("/m", &["-H", "x-uid: 42"]).await.unwrap();
        let backend = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("hello from"))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            backend(&first).starts_with("hello from zone z1 backend"),
            "{first}"
        );
        for _ in 0..3 {
            let again = edge.curl("/m", &["-H", "x-uid: 42"]).await.unwrap();
            assert_eq!(backend(&again), backend(&first));
        }
    })
    .await;
}

/// The defence posture: an oversized request head gets 431, a denied path 403; both
/// reach the access log; the admin endpoint exports the zone and TLS series.
#[tokio::test]
async fn defence_defaults_and_observability() {
    with_timeout(LIMIT, async {
        let edge = Edge::default_run();
        let big = format!("x-big: {}", "a".repeat(20 * 1024));
        let Some(out) = edge.curl("/", &["--http1.1", "-H", &big]).await else {
            return;
        };
        assert_eq!(status(&out), 431, "{out}");
        for path in ["/admin/users", "/index.php", "/.git/config"] {
            let out = edge.curl(path, &[]).await.unwrap();
            assert_eq!(status(&out), 403, "{path}: {out}");
        }
        let out = edge.curl("/", &["-X", "TRACE"]).await.unwrap();
        assert_eq!(status(&out), 403, "{out}");
        let ok = edge.curl("/fine", &["-H", "x-uid: 1"]).await.unwrap();
        assert_eq!(status(&ok), 200, "{ok}");

        let logged = proxy_test_support::eventually(std::time::Duration::from_secs(3), || {
            let log = edge.stdout();
            log.contains("/index.php") && log.contains("403") && log.contains("/fine")
        })
        .await;
        assert!(logged, "access log:\n{}", edge.stdout());
        let metrics = format!("http://{}/stats/prometheus", edge.admin);
        let out =
            proxy_test_support::tools::curl(&["-s", &metrics], std::time::Duration::from_secs(5))
                .await
                .unwrap();
        let text = out.stdout_text();
        for series in ["proxy_tls_", "proxy_lb_zone_", "proxy_quic_h3_"] {
            assert!(text.contains(series), "no {series} series:\n{text}");
        }
        // The handshakes signed on the offload engines; the deny list counted.
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert!(sum("proxy_tls_offload_operations_total{") >= 1.0, "{text}");
        let denied = "proxy_filters_rbac_decisions_total{filter=\"edge\",decision=\"denied\"}";
        assert!(sum(denied) >= 4.0, "{text}");
    })
    .await;
}
