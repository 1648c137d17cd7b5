//! Router tests, by topic; the table-building and lookup helpers they share.

mod matching;
mod validation;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::{Route, RouteTable};
use crate::config::VirtualHostConfig;

fn build(yaml: &str) -> Result<RouteTable, String> {
    // Matchers are checked as the config deserializes, the rest when the table builds.
    let vhosts: Vec<VirtualHostConfig> = crate::config::from_yaml(yaml)
        .map_err(|e| e.within("listeners[0].virtual_hosts").to_string())?;
    RouteTable::build("listeners[0]", &vhosts, &|c| c != "missing").map_err(|e| e.to_string())
}

fn table(yaml: &str) -> RouteTable {
    build(yaml).expect("table builds")
}

fn err(yaml: &str) -> String {
    build(yaml).expect_err("table is refused")
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

/// The name of the route found, if any.
fn find(
    t: &RouteTable,
    host: Option<&str>,
    method: Method,
    path: &str,
    h: &HeaderMap,
) -> Option<String> {
    t.find(host, &method, path, h).map(|r| r.name.to_string())
}

fn get(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    find(t, Some(host), Method::GET, path, &HeaderMap::new())
}

fn route<'a>(t: &'a RouteTable, name: &str) -> &'a Arc<Route> {
    t.routes().find(|r| &*r.name == name).expect("route exists")
}

/// One vhost `v` for `*` with the given routes (a YAML list body, indented 4).
fn one_vhost(routes: &str) -> RouteTable {
    table(&format!("- name: v\n  domains: ['*']\n  routes:\n{routes}"))
}
