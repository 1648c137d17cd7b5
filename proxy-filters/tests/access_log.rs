//! The access log filter through a real proxy: text templates and JSON lines in a
//! file, with status, path, headers, route, bytes sent; bad templates refused.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{path::PathBuf, time::Duration};

use common::{config, listener, start, try_start, upstream};
use proxy_test_support::{
    client::get, closed_port, eventually, temp::TempDir, with_timeout, TestServer,
};

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn text_and_json_lines() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let (text_dir, json_dir) = (TempDir::new("access-log-text"), TempDir::new("access-log-json"));
        let (text, json) = (text_dir.join("access.log"), json_dir.join("access.log"));
        let text_cfg = format!(
            "[{{typed: access_log, config: {{path: '{}', format: {{text: '%METHOD% %PATH% %STATUS% %BYTES_SENT% %REQ(x-id)% %RESP(x-upstream)% %ROUTE% 100%%'}}}}}}]",
            text.display()
        );
        let json_cfg = format!(
            "[{{typed: access_log, config: {{path: '{}', format: {{json: {{status: '%STATUS%', path: '%PATH%', id: '%REQ(x-id)%', peer: '%PEER_IP%', ms: '%DURATION%', at: '%START_TIME%'}}}}}}}}]",
            json.display()
        );
        // The core access log (to /dev/null) makes the proxy record the matched
        // route for %ROUTE% (see /work/core-requests/filters.md).
        let yaml = config(
            &[listener("t", &text_cfg, "b"), listener("j", &json_cfg, "b")],
            &[("b", up.addr)],
        );
        let proxy = start(&format!("access_log: {{ path: /dev/null }}\n{yaml}"));
        assert_eq!(get(proxy.addr("t"), "/a?q=1", &[("x-id", "r1")]).await.status, 200);
        assert_eq!(get(proxy.addr("t"), "/b", &[]).await.status, 200);
        assert_eq!(get(proxy.addr("j"), "/c", &[("x-id", "r2")]).await.status, 200);

        assert!(eventually(Duration::from_secs(5), || lines(&text).len() == 2).await, "{:?}", lines(&text));
        let t = lines(&text);
        assert_eq!(t[0], "GET /a?q=1 200 7 r1 backend t-route 100%");
        assert_eq!(t[1], "GET /b 200 7 - backend t-route 100%");

        assert!(eventually(Duration::from_secs(5), || lines(&json).len() == 1).await);
        let v: serde_json::Value = serde_json::from_str(&lines(&json)[0]).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/c");
        assert_eq!(v["id"], "r2");
        assert_eq!(v["peer"], "127.0.0.1");
        assert!(v["ms"].as_f64().unwrap() >= 0.0);
        let at = v["at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
    })
    .await;
}

#[test]
fn bad_formats_are_refused() {
    let up = closed_port();
    for (section, field) in [
        (
            "{format: {text: '%NOPE%'}}",
            "listeners[0].http_filters[0].config.format.text: unknown field %NOPE%",
        ),
        (
            "{format: {json: {a: '%REQ(bad name)%'}}}",
            "listeners[0].http_filters[0].config.format.json.a",
        ),
        (
            "{format: {xml: 'x'}}",
            "listeners[0].http_filters[0].config.format",
        ),
        (
            "{path: /nonexistent-dir/x/y.log}",
            "listeners[0].http_filters[0].config.path: /nonexistent-dir/x/y.log: its directory does not exist",
        ),
        (
            "{path: /tmp}",
            "listeners[0].http_filters[0].config.path: /tmp: is a directory",
        ),
    ] {
        let filters = format!("[{{typed: access_log, config: {section}}}]");
        let err = try_start(&config(&[listener("e", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{section} accepted"));
        assert!(err.contains(field), "{section}: {err}");
    }
}

/// Threads of this process named `name` (Linux; elsewhere none are seen).
fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

/// What `--validate` does, building the whole snapshot, opens no log file and starts
/// no writer thread; a relative path resolves from the config file's directory, where
/// the first line creates it.
#[tokio::test]
async fn building_starts_nothing_and_paths_are_the_config_files() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let temp = TempDir::new("access-log-relative");
        let dir = temp.path();
        let filters = "[{typed: access_log, config: {path: logs/access.log, format: {text: '%PATH% %STATUS%'}}}]";
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let file = dir.join("proxy.yaml");
        std::fs::write(&file, config(&[listener("e", filters, "b")], &[("b", up.addr)])).unwrap();
        let log = dir.join("logs/access.log");

        let loaded = proxy_core::config::Config::load(&file).unwrap();
        let before = threads_named("access-log");
        let snapshot =
            proxy_core::snapshot::Snapshot::build(loaded.clone(), &common::registry(), None)
                .unwrap();
        assert!(!log.exists(), "building opened the log file");
        assert_eq!(threads_named("access-log"), before, "building started a thread");
        drop(snapshot);

        let server = proxy_core::Server::new(loaded, common::registry()).unwrap();
        let proxy = TestServer::run(server).unwrap();
        assert_eq!(get(proxy.addr("e"), "/rel", &[]).await.status, 200);
        assert!(eventually(Duration::from_secs(5), || lines(&log) == ["/rel 200"]).await, "{:?}", lines(&log));
    })
    .await;
}
