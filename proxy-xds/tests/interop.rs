//! The client against an independent control plane (Python, grpcio + xds-protos;
//! `tests/control_plane/ads_server.py`), in both variants of ADS: state of the world
//! and delta. CDS, EDS, LDS, RDS and SDS pushed; requests through a real proxy on
//! 127.0.0.1 follow a route change, an endpoint added and removed, a weighted split;
//! its TLS listener presents the certificate SDS sent; a bad cluster, a certificate
//! with another's key and a bad route are NACKed naming the field while traffic
//! keeps flowing; the control plane restarts mid-run and the client resubscribes with
//! the versions it holds. Skipped loudly when the Python packages are missing
//! (`scripts/deps/proxy-xds.sh` installs them).

use crate::common::tls;
use crate::control_plane;

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use control_plane::{Outcome, PyControlPlane};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually_async,
    pki::{Issued, Pki},
    ports::any_port,
    with_timeout, yaml, TestServer, Upstream,
};
use proxy_tls::rotation::{MemorySecrets, Secret};
use proxy_xds::{ApiType, BackoffConfig, TlsSecrets, XdsClient, XdsConfig};
use serde_json::{json, Value};
use tls::{der, served};

const LIMIT: Duration = Duration::from_secs(20);

/// A proxy with static listeners `main` and `tls` (its certificate secret `web`,
/// `initial` until SDS sends it) that asks for clusters, endpoints, listeners,
/// routes and secret `web` over `api_type`, and the spawned client.
fn proxy(
    cp: &PyControlPlane,
    api_type: ApiType,
    initial: &Issued,
) -> (TestServer, tokio::task::JoinHandle<()>) {
    let store = Arc::new(MemorySecrets::default());
    store.set(
        "web",
        Secret::key_pair(initial.cert_pem.clone(), initial.key_pem.clone()),
    );
    let tls = "network_filters: [{typed: tls, config: {certificates: [{secret: web}]}}]";
    let base = Config::from_yaml(&yaml::config(
        &[
            yaml::listener("main", "a", &[]),
            yaml::listener("tls", "a", &[tls]),
        ],
        &[],
    ))
    .expect("base config");
    let mut xds = XdsConfig::new(cp.address(), "interop-node");
    xds.listeners = true;
    xds.api_type = api_type;
    xds.secrets = vec!["web".into()];
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base).with_secrets(Arc::new(TlsSecrets::new(store.clone())));
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    proxy_tls::register_with(&mut registry, proxy_tls::TlsRuntime::with_secrets(store));
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    (proxy, tokio::spawn(client.run(server)))
}

/// Clusters `a` and `b` (EDS), their endpoints, listener `web` at `web` with routes
/// `r` over RDS.
fn snapshot(web: SocketAddr, a: &[&Upstream], b: &Upstream, routes: Value, tls: &Value) -> Value {
    let addrs: Vec<String> = a.iter().map(|u| u.addr.to_string()).collect();
    json!({
        "clusters": [{"name": "a"}, {"name": "b"}],
        "endpoints": {"a": addrs, "b": [b.addr.to_string()]},
        "listeners": [{"name": "web", "address": web.to_string(), "rds": "r"}],
        "routes": {"r": routes},
        "secrets": {"web": tls},
    })
}

/// Secret `web`: `cert`'s chain with `key`'s key.
fn secret(cert: &Issued, key: &Issued) -> Value {
    json!({"cert": cert.cert_pem, "key": key.key_pem})
}

/// The bodies of `n` GETs of `/` on `addr`; every one must be a 200.
async fn bodies(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client::get(addr, "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        out.push(r.text());
    }
    out
}

fn acked(answers: &std::collections::BTreeMap<String, Outcome>, types: &[&str]) {
    for t in types {
        assert_eq!(answers.get(*t), Some(&Outcome::Ack), "{t}: {answers:?}");
    }
}

fn nack<'a>(answers: &'a std::collections::BTreeMap<String, Outcome>, ty: &str) -> &'a str {
    match answers.get(ty) {
        Some(Outcome::Nack(m)) => m,
        other => panic!("{ty}: expected a NACK, got {other:?} in {answers:?}"),
    }
}

async fn follows_the_control_plane(api_type: ApiType) {
    let Some(mut cp) = PyControlPlane::start().await else {
        return;
    };
    let delta = api_type == ApiType::Delta;
    let (a1, a2, b) = (
        Upstream::named("a1"),
        Upstream::named("a2"),
        Upstream::named("b"),
    );
    let web_addr = any_port(); // 127.0.0.1:0: the proxy binds a free port
    let pki = Pki::new(if delta {
        "xds-interop-delta"
    } else {
        "xds-interop-sotw"
    });
    let (first_cert, second_cert) = (
        pki.server("first", &["a.test"]),
        pki.server("second", &["a.test"]),
    );
    let tls = secret(&second_cert, &second_cert);
    let (proxy, task) = proxy(&cp, api_type, &first_cert);
    assert_eq!(served(proxy.addr("tls"), &pki).await, der(&first_cert));

    // The stream opens with the node on its first request; CDS and LDS wildcards.
    let first = cp.request("cds", "request").await;
    assert_eq!(first["variant"], if delta { "delta" } else { "sotw" });
    assert_eq!(first["node"], "interop-node");
    cp.request("lds", "request").await;

    // v1: everything; the listener serves once its routes came.
    let to_a = json!([{"prefix": "/", "cluster": "a"}]);
    let answers = cp
        .push(
            "1",
            snapshot(web_addr, &[&a1], &b, to_a.clone(), &tls),
            &["cds", "eds", "lds", "rds", "sds"],
        )
        .await;
    acked(&answers, &["cds", "eds", "lds", "rds", "sds"]);
    let web = proxy.addr("web");
    assert_eq!(bodies(web, 3).await, ["a1"; 3]);
    // The certificate from SDS: new handshakes present it.
    assert_eq!(served(proxy.addr("tls"), &pki).await, der(&second_cert));

    // v2: a route change, applied before its ACK.
    let to_b = json!([{"prefix": "/", "cluster": "b"}]);
    let answers = cp
        .push(
            "2",
            snapshot(web_addr, &[&a1], &b, to_b.clone(), &tls),
            &["rds"],
        )
        .await;
    acked(&answers, &["rds"]);
    assert_eq!(bodies(web, 3).await, ["b"; 3]);

    // v3: back to `a`, which gains an endpoint; v4: the first endpoint removed.
    let answers = cp
        .push(
            "3",
            snapshot(web_addr, &[&a1, &a2], &b, to_a.clone(), &tls),
            &["rds", "eds"],
        )
        .await;
    acked(&answers, &["rds", "eds"]);
    let seen: BTreeSet<String> = bodies(web, 20).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["a1".into(), "a2".into()]));
    let answers = cp
        .push(
            "4",
            snapshot(web_addr, &[&a2], &b, to_a.clone(), &tls),
            &["eds"],
        )
        .await;
    acked(&answers, &["eds"]);
    assert_eq!(bodies(web, 10).await, ["a2"; 10]);

    // v5: a weighted split between `a` and `b`.
    let split = json!([{"prefix": "/", "weighted": [["a", 50], ["b", 50]]}]);
    let answers = cp
        .push(
            "5",
            snapshot(web_addr, &[&a2], &b, split.clone(), &tls),
            &["rds"],
        )
        .await;
    acked(&answers, &["rds"]);
    let seen: BTreeSet<String> = bodies(web, 40).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["a2".into(), "b".into()]));

    // v6: a cluster with outlier detection and a certificate with another's key,
    // v7 a route with a bad regex: NACKed, the field named; the split keeps
    // serving, the certificate stays.
    let mismatched = secret(&first_cert, &second_cert);
    let mut bad = snapshot(web_addr, &[&a2], &b, split.clone(), &mismatched);
    bad["clusters"][0]["fields"] =
        json!({"outlier_detection": {"split_external_local_origin_errors": true}});
    let answers = cp.push("6", bad, &["cds", "sds"]).await;
    let detail = nack(&answers, "cds");
    assert!(
        detail.starts_with(
            "cluster \"a\": outlier_detection.split_external_local_origin_errors: not supported"
        ),
        "{detail}"
    );
    let detail = nack(&answers, "sds");
    assert!(
        detail
            .starts_with("secret \"web\": tls_certificate.private_key: private key does not match"),
        "{detail}"
    );
    assert_eq!(served(proxy.addr("tls"), &pki).await, der(&second_cert));
    let bad_regex = json!([{"regex": "/(", "cluster": "a"}, {"prefix": "/", "weighted": [["a", 50], ["b", 50]]}]);
    let answers = cp
        .push(
            "7",
            snapshot(web_addr, &[&a2], &b, bad_regex, &tls),
            &["rds"],
        )
        .await;
    let detail = nack(&answers, "rds");
    assert!(
        detail.starts_with(
            "route_configuration \"r\": virtual_hosts[0].routes[0].match.safe_regex.regex:"
        ),
        "{detail}"
    );
    let seen: BTreeSet<String> = bodies(web, 40).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["a2".into(), "b".into()]));
    // The good v5 again, so that what the control plane serves is what runs.
    let answers = cp
        .push("8", snapshot(web_addr, &[&a2], &b, split, &tls), &[])
        .await;
    assert!(answers.values().all(|o| *o == Outcome::Ack), "{answers:?}");

    // The control plane restarts: the proxy keeps serving, the client opens a new
    // stream and says what it holds.
    let mark = cp.log.len();
    let opening = cp.restart(&["cds", "eds", "lds", "rds", "sds"]).await;
    assert_eq!(opening["cds"]["node"], "interop-node");
    if delta {
        for (ty, names) in [
            ("cds", ["a", "b"]),
            ("eds", ["a", "b"]),
            ("lds", ["web", ""]),
            ("rds", ["r", ""]),
            ("sds", ["web", ""]),
        ] {
            let held = opening[ty]["initial_versions"]
                .as_object()
                .expect("initial_versions");
            let want: BTreeSet<&str> = names.iter().copied().filter(|n| !n.is_empty()).collect();
            let got: BTreeSet<&str> = held.keys().map(String::as_str).collect();
            assert_eq!(got, want, "{ty}: {held:?}");
            assert!(held
                .values()
                .all(|v| v.as_str().is_some_and(|v| !v.is_empty())));
        }
        assert_eq!(opening["eds"]["subscribe"], json!(["a", "b"]));
        assert_eq!(opening["rds"]["subscribe"], json!(["r"]));
        assert_eq!(opening["sds"]["subscribe"], json!(["web"]));
        // It holds every current version: the control plane has nothing to send.
        let resent: Vec<&Value> = cp
            .since(mark)
            .iter()
            .filter(|e| e["event"] == "sent")
            .collect();
        assert!(resent.is_empty(), "{resent:?}");
    } else {
        for ty in ["cds", "eds", "lds", "rds", "sds"] {
            assert_eq!(opening[ty]["version_info"], "8", "{ty}");
            assert_eq!(opening[ty]["nonce"], "", "{ty}");
        }
        assert_eq!(opening["eds"]["names"], json!(["a", "b"]));
        assert_eq!(opening["rds"]["names"], json!(["r"]));
        assert_eq!(opening["sds"]["names"], json!(["web"]));
    }
    let seen: BTreeSet<String> = bodies(web, 20).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["a2".into(), "b".into()]));

    // The new stream carries changes as before.
    let answers = cp
        .push("9", snapshot(web_addr, &[&a2], &b, to_b, &tls), &["rds"])
        .await;
    acked(&answers, &["rds"]);
    assert_eq!(bodies(web, 5).await, ["b"; 5]);
    let answers = cp
        .push(
            "10",
            snapshot(web_addr, &[&a1], &b, to_a, &tls),
            &["eds", "rds"],
        )
        .await;
    acked(&answers, &["eds", "rds"]);
    assert!(
        eventually_async(LIMIT, || async move {
            client::get(web, "/", &[]).await.text() == "a1"
        })
        .await
    );

    task.abort();
    cp.quit().await;
}

#[tokio::test]
async fn state_of_the_world_against_a_python_control_plane() {
    with_timeout(LIMIT, follows_the_control_plane(ApiType::Sotw)).await;
}

#[tokio::test]
async fn delta_against_a_python_control_plane() {
    with_timeout(LIMIT, follows_the_control_plane(ApiType::Delta)).await;
}
