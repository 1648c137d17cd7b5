//! The serde types of the one config model: listeners, routes, clusters, endpoints.
//!
//! These are plain data. [`super::validate`] turns them into checked runtime objects;
//! nothing here is trusted until it has been through validation.

mod cluster;
mod listener;
mod route;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::access_log::LogFormat;

pub use cluster::{
    CircuitBreakersConfig, ClusterConfig, EndpointConfig, PoolConfig, RetryBudgetConfig,
    UpstreamProtocol,
};
pub use listener::{
    ConnectionLimits, HttpFilterConfig, ListenAddress, ListenerConfig, ListenerProtocol,
    TypedConfig, UnderscoreHeaders,
};
pub use route::{
    FilterOverride, HeaderValueConfig, PathMatchConfig, RetryOn, RetryPolicyConfig, RouteConfig,
    RouteMatchConfig, VirtualHostConfig,
};

/// The whole proxy configuration, as loaded from YAML (or produced by a control plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin listener (metrics, config dump, readiness, reload).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Process-wide runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The access log; off unless configured.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// The listeners that accept downstream traffic.
    pub listeners: Vec<ListenerConfig>,
    /// The upstream clusters that routes send traffic to.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// The xDS client's bootstrap, parsed by proxy-xds; absent: no control plane.
    /// proxy-core carries it and ignores its content (a change of it is not acted on
    /// by a reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xds: Option<crate::config::Section>,
    /// The QUIC and HTTP/3 listeners, parsed by proxy-quic (`QuicSection::from_section`);
    /// absent: none. proxy-core carries it and ignores its content, like `xds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<crate::config::Section>,
    /// The directory relative paths in this config resolve from: the config file's
    /// ([`Config::load`]); the working directory when `None`. Not part of the file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin endpoint listens, e.g. `127.0.0.1:15000`.
    pub address: SocketAddr,
}

/// Process-wide runtime settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads. `0` means one per available core.
    #[serde(default = "default_workers")]
    pub worker_threads: usize,
    /// How the workers share the work.
    #[serde(default)]
    pub flavor: RuntimeFlavor,
    /// How long a graceful drain (SIGTERM) waits for in-flight requests.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Whether the server raises the process's soft limit on open files to the hard
    /// limit when it starts (default `true`; see [`crate::raise_open_files_limit`]).
    /// Each proxied connection holds two files, and a shell's or a service manager's
    /// usual soft limit of 1,024 would stop a proxy near 500 connections.
    #[serde(default = "listener::default_true")]
    pub raise_open_files_limit: bool,
}

/// How worker threads share the connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeFlavor {
    /// Each worker runs its own single-threaded event loop and accepts on its own
    /// `SO_REUSEPORT` socket; a connection stays on the worker that accepted it. The
    /// faster choice (BENCHMARKS.md).
    #[default]
    PerCore,
    /// One work-stealing tokio runtime shared by all workers.
    MultiThread,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            flavor: RuntimeFlavor::default(),
            worker_threads: default_workers(),
            drain_timeout: default_drain_timeout(),
            raise_open_files_limit: true,
        }
    }
}

fn default_workers() -> usize {
    1
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The top-level access log (see [`crate::access_log`]): every request of every
/// listener, including those the connection loop answers itself.
///
/// ```yaml
/// access_log: { format: json, path: logs/access.log }
/// # format: text | json | {text: "<template>"} | {json: {KEY: "<template>"}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The line format (default `json`): `text` and `json` are the proxy's own lines,
    /// `{text: TEMPLATE}` and `{json: {KEY: TEMPLATE}}` lines of `%FIELD%`
    /// placeholders.
    #[serde(default = "LogFormat::json")]
    pub format: LogFormat,
    /// A file to append to, relative to the config file's directory; standard
    /// output when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// `json` on standard output.
impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::json(),
            path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    const BASE: &str = "listeners: []\n";

    #[test]
    fn xds_section_is_carried_and_round_trips() {
        let cfg = Config::from_yaml(&format!(
            "{BASE}xds: {{servers: [\"127.0.0.1:18000\"], node: {{id: n1}}}}\n"
        ))
        .expect("parses");
        let xds = cfg.xds.as_ref().expect("xds section");
        assert_eq!(xds.as_value()["node"]["id"], "n1");
        let yaml = crate::config::to_yaml(&cfg).expect("serializes");
        assert_eq!(Config::from_yaml(&yaml).expect("round trip"), cfg);
        assert!(cfg.to_json().contains("\"xds\""));
    }

    #[test]
    fn quic_section_is_carried_and_round_trips() {
        let cfg = Config::from_yaml(&format!(
            "{BASE}quic: {{h3: [{{serves: web, address: \"127.0.0.1:0\"}}]}}\n"
        ))
        .expect("parses");
        let quic = cfg.quic.as_ref().expect("quic section");
        assert_eq!(quic.as_value()["h3"][0]["serves"], "web");
        let yaml = crate::config::to_yaml(&cfg).expect("serializes");
        assert_eq!(Config::from_yaml(&yaml).expect("round trip"), cfg);
        let plain = Config::from_yaml(BASE).expect("parses");
        assert_eq!(plain.quic, None);
        assert!(!crate::config::to_yaml(&plain)
            .expect("yaml")
            .contains("quic"));
    }

    #[test]
    fn absent_xds_is_none_and_not_serialized() {
        let cfg = Config::from_yaml(BASE).expect("parses");
        assert_eq!(cfg.xds, None);
        assert!(!crate::config::to_yaml(&cfg).expect("yaml").contains("xds"));
        assert!(!cfg.to_json().contains("xds"));
    }

    #[test]
    fn snapshot_ignores_the_xds_content() {
        let yaml = "listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtual_hosts: []\nxds: {not: [checked, by, core]}\n";
        let cfg = Config::from_yaml(yaml).expect("parses");
        let registry = crate::Registry::default();
        let first = crate::snapshot::Snapshot::build(cfg.clone(), &registry, None)
            .expect("core does not read the section");
        let mut changed = cfg;
        changed.xds = None;
        crate::snapshot::Snapshot::build(changed, &registry, Some(&first))
            .expect("a change of xds alone is accepted");
    }
}
