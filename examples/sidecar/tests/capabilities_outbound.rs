//! The capability crates in the sidecar binary on `configs/mesh.yaml`, outbound:
//! proxy-tls origination with a client certificate (to the inbound listener, standing
//! in for a peer sidecar), proxy-lb's Maglev and least request, outlier detection and
//! health checks live on `/clusters`, and an outlier ejection.

#![allow(clippy::unwrap_used)]

use crate::mesh;

use mesh::*;

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
