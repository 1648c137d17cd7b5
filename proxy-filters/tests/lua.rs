//! Lua script filters through a real proxy: request and response headers, a path
//! rewrite reaching the upstream, a local answer, a status change; an endless loop,
//! a memory bomb and a runtime error each answered 500 and counted, the next request
//! served; a script that does not compile refused at load naming the field; a
//! reload changing the script; a script file resolved from the config's directory.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::{config, listener, registry, start, try_start, upstream};
use http::Method;
use proxy_test_support::{
    client::{get, H1Client},
    free_addr, prometheus,
    temp::TempDir,
    with_timeout, TestServer, Upstream,
};

/// A `lua` filter (YAML flow map) named `name` running `source`; `extra` are more
/// keys of its config (`, instruction_limit: 1000`).
fn lua(name: &str, source: &str, extra: &str) -> String {
    // A JSON string is a YAML double-quoted scalar.
    let source = serde_json::to_string(source).unwrap();
    format!("{{typed: lua, config: {{name: {name}, script: {{source: {source}}}{extra}}}}}")
}

/// A proxy with an admin listener and one listener per `(name, filters)`, all to
/// `up`.
fn gateway(up: &Upstream, admin: SocketAddr, listeners: &[(&str, String)]) -> String {
    let listeners: Vec<String> = listeners
        .iter()
        .map(|(name, filters)| listener(name, &format!("[{filters}]"), "b"))
        .collect();
    format!(
        "admin: {{ address: \"{admin}\" }}\n{}",
        config(&listeners, &[("b", up.addr)])
    )
}

async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let text = get(admin, "/stats/prometheus", &[]).await.text();
    prometheus::sample(&text, series).unwrap_or(0.0)
}

const REWRITE: &str = r#"
function on_request(req)
  if req:header("x-deny") then
    return req:respond(403, { ["x-denied-by"] = "lua", ["content-type"] = "text/plain" }, "no\n")
  end
  req:set_header("x-consumer", "c-" .. (req:header("x-api-key") or "none"))
  req:remove_header("x-api-key")
  req:set_header("x-client", req:client_ip())
  req:set_path("/internal" .. req:path())
end

function on_response(resp)
  resp:add_header("x-served-by", "lua")
  resp:remove_header("x-remove-me")
  if resp:header("x-upstream") == "backend" then resp:set_status(203) end
end
"#;

#[tokio::test]
async fn headers_path_status_and_local_answers() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let proxy = start(&gateway(&up, admin, &[("edge", lua("gw", REWRITE, ""))]));
        let edge = proxy.addr("edge");

        let r = get(edge, "/users/42?page=2", &[("x-api-key", "k1")]).await;
        assert_eq!(r.status, 203, "on_response changed the status");
        assert_eq!(r.header("x-served-by"), Some("lua"));
        assert_eq!(r.header("x-remove-me"), None);
        assert_eq!(r.text(), "backend");
        let seen = &up.requests()[0];
        assert_eq!(seen.uri.path(), "/internal/users/42");
        assert_eq!(seen.uri.query(), Some("page=2"), "the query is kept");
        assert_eq!(seen.header("x-consumer"), Some("c-k1"));
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.header("x-client"), Some("127.0.0.1"));

        let denied = get(edge, "/x", &[("x-deny", "1")]).await;
        assert_eq!(denied.status, 403);
        assert_eq!(denied.header("x-denied-by"), Some("lua"));
        assert_eq!(
            denied.header("x-served-by"),
            None,
            "no on_response for a local answer"
        );
        assert_eq!(denied.text(), "no\n");
        assert_eq!(up.hits(), 1, "the local answer never reached the upstream");
        assert_eq!(
            metric(admin, r#"proxy_filters_lua_calls_total{filter="gw"}"#).await,
            2.0
        );
        assert_eq!(
            metric(
                admin,
                r#"proxy_filters_lua_local_replies_total{filter="gw"}"#
            )
            .await,
            1.0
        );
    })
    .await;
}

/// Loops, allocates or fails only when asked by a header, so that the next request
/// shows the worker goes on.
const BAD: &str = r#"
function on_request(req)
  if req:header("x-loop") then while true do end end
  if req:header("x-catch") then while true do pcall(function() while true do end end) end end
  if req:header("x-bomb") then
    local t = {}
    while true do t[#t + 1] = string.rep("x", 1024) .. #t end
  end
  if req:header("x-rep") then return string.rep("x", 1 << 28) end
  if req:header("x-fail") then error("boom") end
  req:set_header("x-ok", "1")
end
"#;

#[tokio::test]
async fn budgets_and_errors_answer_500_and_the_next_request_works() {
    with_timeout(Duration::from_secs(60), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let filter = lua(
            "bad",
            BAD,
            ", memory_limit_bytes: 2MiB, instruction_limit: 5000000",
        );
        let proxy = start(&gateway(&up, admin, &[("edge", filter)]));
        let edge = proxy.addr("edge");
        for (header, reason, label) in [
            ("x-loop", "script_budget_exceeded", "instructions"),
            ("x-catch", "script_budget_exceeded", "instructions"),
            ("x-bomb", "script_budget_exceeded", "memory"),
            ("x-rep", "script_budget_exceeded", "memory"),
            ("x-fail", "script_error", "runtime"),
        ] {
            let series =
                format!(r#"proxy_filters_lua_errors_total{{filter="bad",reason="{label}"}}"#);
            let before = metric(admin, &series).await;
            let r = get(edge, "/", &[(header, "1")]).await;
            assert_eq!(r.status, 500, "{header}");
            assert_eq!(r.header("x-proxy-error"), Some(reason), "{header}");
            assert_eq!(metric(admin, &series).await, before + 1.0, "{header}");
            let next = get(edge, "/", &[]).await;
            assert_eq!(next.status, 200, "after {header}");
        }
        assert_eq!(up.hits(), 5, "only the good requests reached the upstream");
        assert!(up.requests().iter().all(|s| s.header("x-ok") == Some("1")));
    })
    .await;
}

#[tokio::test]
async fn a_script_that_does_not_compile_is_refused_naming_the_field() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let bad = lua(
            "c",
            "function on_request(req)\n  req:set_header('a' 'b')\nend",
            "",
        );
        let e = try_start(&config(
            &[listener("edge", &format!("[{bad}]"), "b")],
            &[("b", up.addr)],
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "listeners[0].http_filters[0].config.script.source: does not compile: script:2:"
            ),
            "{e}"
        );
        let none = lua("c", "function on_reqest(req) end", "");
        let e = try_start(&config(
            &[listener("edge", &format!("[{none}]"), "b")],
            &[("b", up.addr)],
        ))
        .unwrap_err();
        assert!(
            e.contains("config.script.source: the script defines no `on_request`"),
            "{e}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_reload_with_a_changed_script_takes_effect_on_the_next_request() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        // Two workers, so that each has its own Lua state of each script.
        let version = |v: &str| {
            let src = format!("function on_request(req) req:set_header('x-version', '{v}') end");
            gateway(&up, admin, &[("edge", lua("r", &src, ""))])
                .replace("worker_threads: 1", "worker_threads: 2")
        };
        let proxy = start(&version("1"));
        let edge = proxy.addr("edge");
        // One keep-alive connection across the reloads, and fresh ones.
        let mut kept = H1Client::new(edge);
        let mut send = async |n: usize| {
            for _ in 0..n {
                let r = kept
                    .request(Method::GET, "/", &[], Bytes::new())
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(get(edge, "/", &[]).await.status, 200);
            }
        };
        send(3).await;
        proxy.reload(&version("2")).unwrap();
        send(3).await;
        // A reload whose script does not compile is refused; version 2 goes on.
        let bad = gateway(&up, admin, &[("edge", lua("r", "function (", ""))])
            .replace("worker_threads: 1", "worker_threads: 2");
        let e = proxy.reload(&bad).unwrap_err();
        assert!(e.contains("script.source: does not compile"), "{e}");
        send(2).await;
        assert_eq!(kept.connects, 1, "one connection all along");
        let seen: Vec<_> = up
            .requests()
            .iter()
            .map(|s| s.header("x-version").unwrap_or_default().to_owned())
            .collect();
        let want: Vec<&str> = [["1"; 6].as_slice(), &["2"; 10]].concat();
        assert_eq!(seen, want);
    })
    .await;
}

#[tokio::test]
async fn a_script_path_resolves_from_the_config_file() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let dir = TempDir::new("lua-path");
        std::fs::create_dir(dir.join("scripts")).unwrap();
        std::fs::write(
            dir.join("scripts/gw.lua"),
            "function on_request(req) req:set_header('x-from', 'file') end\n",
        )
        .unwrap();
        let yaml = config(
            &[listener(
                "edge",
                "[{typed: lua, config: {script: {path: scripts/gw.lua}}}]",
                "b",
            )],
            &[("b", up.addr)],
        );
        std::fs::write(dir.join("proxy.yaml"), &yaml).unwrap();
        let cfg = proxy_core::config::Config::load(&dir.join("proxy.yaml")).unwrap();
        let server = proxy_core::Server::new(cfg, registry()).unwrap();
        let proxy = TestServer::run(server).unwrap();
        assert_eq!(get(proxy.addr("edge"), "/", &[]).await.status, 200);
        assert_eq!(up.requests()[0].header("x-from"), Some("file"));

        let missing = yaml.replace("scripts/gw.lua", "scripts/none.lua");
        let e = try_start(&missing).unwrap_err();
        assert!(e.contains("config.script.path: cannot read"), "{e}");
    })
    .await;
}
