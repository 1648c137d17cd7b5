//! `configs/rpc.yaml` end to end: the gateway binary turns HTTP/JSON calls (with the
//! demo API key) into Bolt and Dubbo generic calls answered by proxy-codec's interop
//! server (sofa-rpc-node, js-remoting-for-apache-dubbo), and the answers back into
//! JSON. Skipped loudly (`SKIPPED:`) without node and the npm peers
//! (`scripts/deps/proxy-codec.sh`).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{example_file, metric, node_peers, rewrite, Gateway, NodeServer};
use http::Method;
use proxy_test_support::{client, free_addr, with_timeout};
use serde_json::{json, Value};

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, Option<String>, Value) {
    let r = client::request(
        addr,
        Method::POST,
        path,
        &[("x-api-key", key), ("content-type", "application/json")],
        Bytes::from(body.to_owned()),
    )
    .await
    .unwrap();
    let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let reason = r.header("x-proxy-error").map(str::to_owned);
    (r.status.as_u16(), reason, json)
}

#[tokio::test]
async fn json_calls_become_bolt_and_dubbo_calls() {
    let test = "json_calls_become_bolt_and_dubbo_calls";
    let Some(peers) = node_peers(test) else {
        return;
    };
    with_timeout(Duration::from_secs(30), async {
        let (bolt, dubbo) = tokio::join!(
            NodeServer::start(&peers, "bolt"),
            NodeServer::start(&peers, "dubbo")
        );
        let (listen, admin) = (free_addr(), free_addr());
        let yaml = rewrite(
            &example_file("configs/rpc.yaml"),
            &[
                ("127.0.0.1:18090", &listen.to_string()),
                ("127.0.0.1:18002", &admin.to_string()),
                ("127.0.0.1:12200", &bolt.addr),
                ("127.0.0.1:20880", &dubbo.addr),
            ],
        );
        let gw = Gateway::start(Some(&yaml), admin).await;

        for path in ["/api/rpc/echo", "/api/dubbo/echo"] {
            let (status, _, v) = post(listen, path, "demo-key", r#"["héllo 😀"]"#).await;
            assert_eq!((status, &v), (200, &json!("héllo 😀")), "{path}");
            let (status, _, v) = post(listen, path, "demo-key", r#"{"text": "named"}"#).await;
            assert_eq!((status, &v), (200, &json!("named")), "{path}");
            // A body that does not fit the signature: 400 naming the argument.
            let (status, reason, v) = post(listen, path, "demo-key", r#"[42]"#).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert_eq!(reason.as_deref(), Some("bad_rpc_arguments"));
            assert_eq!(v["expected"], "java.lang.String", "{v}");
            // No key, or a wrong one: refused before any call.
            let (status, reason, _) = post(listen, path, "guess", r#"["x"]"#).await;
            assert_eq!((status, reason.as_deref()), (401, Some("invalid_api_key")));
        }

        let m = gw.metrics().await;
        for protocol in ["bolt", "dubbo"] {
            let ok = metric(
                &m,
                &[
                    "proxy_codec_json_to_rpc_total",
                    &format!("protocol=\"{protocol}\""),
                    "outcome=\"ok\"",
                ],
            );
            assert_eq!(ok, 2.0, "{protocol}: {m}");
        }
    })
    .await;
}
