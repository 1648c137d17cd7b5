//! The capability crates in the sidecar binary on `configs/mesh.yaml`, RPC:
//! proxy-codec's Bolt and Dubbo calls and HTTP on one `auto` port (in-process Rust
//! peers), and the third-party sofa-rpc-node Bolt client and server when
//! `scripts/deps/proxy-codec.sh` installed them (otherwise a loud SKIPPED).

#![allow(clippy::unwrap_used)]

use crate::mesh;

use mesh::*;

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
