//! The access log filter through a real proxy: text templates and JSON lines in a
//! file, with status, path, headers, route, bytes sent; bad templates refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, time::Duration};

use common::{closed_port, config, eventually, get, listener, with_timeout, Proxy, Upstream};

fn temp_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "proxy-filters-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("access.log")
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn text_and_json_lines() {
    with_timeout(30, async {
        let up = Upstream::start("backend", Duration::ZERO);
        let text = temp_file("text");
        let json = temp_file("json");
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
        let proxy = Proxy::start(&format!("access_log: {{ path: /dev/null }}\n{yaml}"));
        assert_eq!(get(&proxy.addr("t"), "/a?q=1", &[("x-id", "r1")]).await.status, 200);
        assert_eq!(get(&proxy.addr("t"), "/b", &[]).await.status, 200);
        assert_eq!(get(&proxy.addr("j"), "/c", &[("x-id", "r2")]).await.status, 200);

        assert!(eventually(5, || lines(&text).len() == 2).await, "{:?}", lines(&text));
        let t = lines(&text);
        assert_eq!(t[0], "GET /a?q=1 200 7 r1 backend t-route 100%");
        assert_eq!(t[1], "GET /b 200 7 - backend t-route 100%");

        assert!(eventually(5, || lines(&json).len() == 1).await);
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
            "access_log.format.text: unknown field %NOPE%",
        ),
        (
            "{format: {json: {a: '%REQ(bad name)%'}}}",
            "access_log.format.json.a",
        ),
        ("{format: {xml: 'x'}}", "access_log.format"),
        ("{path: /nonexistent-dir/x/y.log}", "access_log.path"),
    ] {
        let filters = format!("[{{typed: access_log, config: {section}}}]");
        let err = Proxy::try_start(&config(&[listener("e", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{section} accepted"));
        assert!(err.contains(field), "{section}: {err}");
    }
}
