//! `/stats/prometheus` is valid Prometheus text with per-listener, per-route,
//! per-cluster and per-endpoint request counts, status classes and latency
//! histograms; `/clusters` lists endpoints with their connection counts.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use proxy_test_support::{client, free_addr, with_timeout, Upstream};

const LIMIT: Duration = Duration::from_secs(60);

// === a checking parser of the Prometheus text format (0.0.4) ===

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition and checks its structure: every sample's family has exactly
/// one `# TYPE` line, before the family's first sample; a family's samples are
/// contiguous; names, labels and values are well formed; histogram buckets are
/// cumulative and end in `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE") {
                let name = words
                    .next()
                    .ok_or_else(|| at("TYPE without a name".into()))?;
                let kind = words
                    .next()
                    .ok_or_else(|| at("TYPE without a type".into()))?;
                if !valid_name(name) {
                    return Err(at(format!("bad metric name {name:?}")));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(at(format!("second TYPE line for {name}")));
                }
                if done.contains(name) || current.as_deref() == Some(name) {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| at(format!("no TYPE line before sample {}", sample.name)))?;
        if current.as_deref() != Some(family.as_str()) {
            if done.contains(&family) {
                return Err(at(format!(
                    "family {family} interleaved with another family"
                )));
            }
            if let Some(prev) = current.take() {
                done.insert(prev);
            }
            current = Some(family);
        }
        samples.push(sample);
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(base.to_owned());
            }
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            // label name
            let mut lname = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c == '}' {
                    break;
                }
                lname.push(c);
                chars.next();
            }
            match chars.next() {
                Some((j, '}')) if lname.is_empty() => break j,
                Some((_, '=')) => {}
                _ => return Err(format!("bad label near {lname:?}")),
            }
            if !valid_name(&lname) || lname.contains(':') {
                return Err(format!("bad label name {lname:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {lname} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            if labels.insert(lname.clone(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((j, '}')) => break j,
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        };
        rest = &after[end + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_owned())?;
    let mut parts = rest.split(' ');
    let v = parts.next().unwrap_or_default();
    let value = match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
    // (family, labels without le) -> buckets in order, count
    type Key = (String, BTreeMap<String, String>);
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    for s in samples {
        let Some(family) = family_of(&s.name, types) else {
            continue;
        };
        if types.get(&family).map(String::as_str) != Some("histogram") {
            continue;
        }
        let mut labels = s.labels.clone();
        if s.name.ends_with("_bucket") {
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("{} without le: {:?}", s.name, s.labels))?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|e| format!("bad le {le:?}: {e}"))?
            };
            buckets
                .entry((family, labels))
                .or_default()
                .push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert((family, labels), s.value);
        }
    }
    for (key, bs) in &buckets {
        for w in bs.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!(
                    "{key:?}: buckets not increasing/cumulative: {bs:?}"
                ));
            }
        }
        let last = bs.last().copied().unwrap_or_default();
        if last.0 != f64::INFINITY {
            return Err(format!("{key:?}: no +Inf bucket"));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!(
                "{key:?}: +Inf bucket {} != _count {:?}",
                last.1,
                counts.get(key)
            ));
        }
    }
    Ok(())
}

/// The value of the one sample named `name` whose labels include all of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one sample {name}{labels:?}; found {found:#?}"
    );
    found[0].value
}

#[test]
fn the_checker_accepts_good_and_refuses_bad_expositions() {
    let good = "# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.3\nh_count 2\n# TYPE g gauge\ng{v=\"q\\\"uote\"} -1.5e3\n";
    let s = parse_exposition(good).expect("good exposition");
    assert_eq!(value(&s, "g", &[("v", "q\"uote")]), -1500.0);
    let bad = [
        ("a 1\n", "no TYPE"),
        ("# TYPE a counter\n# TYPE a counter\na 1\n", "second TYPE"),
        (
            "# TYPE a counter\n# TYPE b counter\na 1\nb 1\na{x=\"1\"} 2\n",
            "interleaved",
        ),
        ("# TYPE a counter\na{x=1} 1\n", "not quoted"),
        ("# TYPE a counter\na one\n", "bad value"),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "cumulative",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
            "_count",
        ),
    ];
    for (text, why) in bad {
        let err = parse_exposition(text).expect_err(text);
        assert!(err.contains(why), "{text:?}: expected {why:?} in {err:?}");
    }
}

// === the sidecar ===

async fn get(client: &mut client::H1Client, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    client
        .request(Method::GET, path, headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_has_every_level_and_clusters_lists_connections() {
    with_timeout(LIMIT, async {
        let a = Upstream::echo("a");
        let b = Upstream::echo("b");
        let dead: SocketAddr = free_addr();
        let mut cfg = ConfigBuilder::new()
            .routes(vec![
                route("alpha", "/alpha/", "alpha", ""),
                route("beta", "/beta/", "beta", ""),
            ])
            .cluster(cluster("alpha", a.addr, ""))
            .cluster(format!(
                "{{name: beta, endpoints: [\"{}\", \"{dead}\"], connect_timeout: 1s}}",
                b.addr
            ));
        let sc = Sidecar::start_with(&mut cfg).await;
        let mut client = client::H1Client::new(cfg.listen);
        // alpha: 4 x 200 and one 404 from the upstream.
        for i in 0..4 {
            assert_eq!(
                get(&mut client, &format!("/alpha/{i}"), &[]).await,
                StatusCode::OK
            );
        }
        assert_eq!(
            get(&mut client, "/alpha/missing", &[("x-echo-status", "404")]).await,
            StatusCode::NOT_FOUND
        );
        // beta: round robin over a live and a refusing endpoint, 3 x 200 and 3 x 503.
        let mut beta = Vec::new();
        for i in 0..6 {
            beta.push(get(&mut client, &format!("/beta/{i}"), &[]).await);
        }
        let ok = beta.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 3, "beta alternates endpoints: {beta:?}");
        // No route.
        assert_eq!(
            get(&mut client, "/nowhere", &[]).await,
            StatusCode::NOT_FOUND
        );

        let r = sc.admin_get("/stats/prometheus").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{:?}",
            r.header("content-type")
        );
        let text = r.text();
        let s = parse_exposition(&text)
            .unwrap_or_else(|e| panic!("invalid Prometheus text: {e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);

        // Listener.
        let l = [("listener", "main")];
        assert_eq!(v("proxy_listener_requests_total", &l), 12.0);
        assert_eq!(v("proxy_listener_requests_active", &l), 0.0);
        let lc = |class| [("listener", "main"), ("class", class)];
        assert_eq!(v("proxy_listener_responses_total", &lc("2xx")), 7.0);
        assert_eq!(v("proxy_listener_responses_total", &lc("4xx")), 2.0);
        assert_eq!(v("proxy_listener_responses_total", &lc("5xx")), 3.0);
        assert_eq!(
            v(
                "proxy_listener_local_responses_total",
                &[("listener", "main"), ("reason", "no_route")]
            ),
            1.0
        );
        assert_eq!(
            v(
                "proxy_listener_request_duration_seconds_bucket",
                &[("listener", "main"), ("le", "+Inf")]
            ),
            12.0
        );
        assert!(v("proxy_listener_connections_total", &l) >= 1.0);
        assert!(v("proxy_listener_rx_bytes_total", &l) > 0.0);
        assert!(v("proxy_listener_tx_bytes_total", &l) > 0.0);

        // Routes.
        let rt = |route, class| {
            [
                ("listener", "main"),
                ("vhost", "default"),
                ("route", route),
                ("class", class),
            ]
        };
        assert_eq!(v("proxy_route_requests_total", &[("route", "alpha")]), 5.0);
        assert_eq!(v("proxy_route_responses_total", &rt("alpha", "2xx")), 4.0);
        assert_eq!(v("proxy_route_responses_total", &rt("alpha", "4xx")), 1.0);
        assert_eq!(v("proxy_route_requests_total", &[("route", "beta")]), 6.0);
        assert_eq!(v("proxy_route_responses_total", &rt("beta", "2xx")), 3.0);
        assert_eq!(v("proxy_route_responses_total", &rt("beta", "5xx")), 3.0);
        assert_eq!(
            v(
                "proxy_route_local_responses_total",
                &[("route", "beta"), ("reason", "connect_failure")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_route_request_duration_seconds_bucket",
                &[("route", "alpha"), ("le", "+Inf")]
            ),
            5.0
        );
        assert_eq!(
            v(
                "proxy_route_request_duration_seconds_count",
                &[("route", "beta")]
            ),
            6.0
        );

        // Clusters.
        assert_eq!(
            v("proxy_cluster_requests_total", &[("cluster", "alpha")]),
            5.0
        );
        assert_eq!(
            v("proxy_cluster_requests_total", &[("cluster", "beta")]),
            6.0
        );
        assert_eq!(
            v(
                "proxy_cluster_responses_total",
                &[("cluster", "beta"), ("class", "5xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_cluster_request_duration_seconds_bucket",
                &[("cluster", "alpha"), ("le", "+Inf")]
            ),
            5.0
        );

        // Endpoints.
        let (live_b, dead_s) = (b.addr.to_string(), dead.to_string());
        fn ep(addr: &str) -> [(&'static str, &str); 2] {
            [("cluster", "beta"), ("endpoint", addr)]
        }
        assert_eq!(v("proxy_endpoint_requests_total", &ep(&live_b)), 3.0);
        assert_eq!(v("proxy_endpoint_requests_total", &ep(&dead_s)), 3.0);
        assert_eq!(
            v(
                "proxy_endpoint_responses_total",
                &[("endpoint", live_b.as_str()), ("class", "2xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_responses_total",
                &[("endpoint", dead_s.as_str()), ("class", "5xx")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_local_responses_total",
                &[("endpoint", dead_s.as_str()), ("reason", "connect_failure")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "proxy_endpoint_request_duration_seconds_bucket",
                &[("endpoint", live_b.as_str()), ("le", "+Inf")]
            ),
            3.0
        );
        let a_s = a.addr.to_string();
        for (cluster, addr) in [("alpha", &a_s), ("beta", &live_b), ("beta", &dead_s)] {
            assert_eq!(
                v(
                    "proxy_endpoint_healthy",
                    &[("cluster", cluster), ("endpoint", addr.as_str())]
                ),
                1.0,
                "no health checking: every endpoint healthy"
            );
        }
        let alpha_ep = [("cluster", "alpha"), ("endpoint", a_s.as_str())];
        assert!(v("proxy_endpoint_upstream_connections_active", &alpha_ep) >= 1.0);
        assert!(v("proxy_endpoint_upstream_idle_connections", &alpha_ep) >= 1.0);
        assert_eq!(
            v("proxy_endpoint_upstream_connections_active", &ep(&dead_s)),
            0.0
        );

        // /clusters
        let r = sc.admin_get("/clusters").await;
        assert_eq!(r.status, StatusCode::OK);
        let j: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("/clusters is not JSON ({e}): {}", r.text()));
        let clusters = j["clusters"].as_array().expect("clusters array");
        let find = |name: &str| {
            clusters
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("cluster {name} in {j:#}"))
        };
        let endpoint = |cluster: &str, addr: &str| {
            find(cluster)["endpoints"]
                .as_array()
                .expect("endpoints array")
                .iter()
                .find(|e| e["address"] == addr)
                .unwrap_or_else(|| panic!("endpoint {addr} of {cluster} in {j:#}"))
                .clone()
        };
        let e = endpoint("alpha", &a_s);
        let (open, idle) = (
            e["open_connections"].as_u64().expect("open_connections"),
            e["idle_connections"].as_u64().expect("idle_connections"),
        );
        assert!(
            open >= 1 && idle >= 1 && idle <= open && open <= 5,
            "alpha's keep-alive connection is open and idle in the pool: {e}"
        );
        assert_eq!(e["requests"], 5, "{e}");
        assert_eq!(e["healthy"], true, "{e}");
        let e = endpoint("beta", &dead_s);
        assert_eq!(e["open_connections"], 0, "{e}");
        assert_eq!(e["idle_connections"], 0, "{e}");
        assert_eq!(e["requests"], 3, "{e}");
        let e = endpoint("beta", &live_b);
        assert!(
            e["open_connections"].as_u64().is_some_and(|n| n >= 1),
            "{e}"
        );
    })
    .await;
}
