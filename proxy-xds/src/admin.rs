//! The client's state on the proxy's admin endpoint ([`XdsAdmin`]): Prometheus
//! series (connection state, per type the accepted version, resources held, ACKs and
//! NACKs) and a `/config_dump/xds` page (per type the version and resource names,
//! and the config the resources were translated into).

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
};

use proxy_core::{metrics::escape_label, Server};
use tokio::sync::watch;

use crate::{XdsClient, XdsStatus};

/// The path [`XdsAdmin::install`] serves the config dump on.
pub const CONFIG_DUMP_PATH: &str = "/config_dump/xds";

/// Renders an [`XdsClient`]'s state for the admin endpoint; [`XdsAdmin::install`]
/// adds it to a server's `/stats/prometheus` and [`CONFIG_DUMP_PATH`]. Clones share
/// the client they follow: [`XdsAdmin::follow`] moves every server it was installed
/// on to another client (one started again after a hot upgrade's roll-back).
///
/// # Example
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_xds::{XdsAdmin, XdsClient, XdsConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let base = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let client = XdsClient::new(XdsConfig::from_yaml("servers: [\"127.0.0.1:18000\"]\nnode: {id: n1}")?, base);
/// let server = Server::new(client.initial_config(), Registry::default())?;
/// let server = XdsAdmin::new(&client).install(server);
/// # let _ = server; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct XdsAdmin {
    /// The status of the client followed, shared by the clones.
    status: Arc<Mutex<watch::Receiver<XdsStatus>>>,
}

impl XdsAdmin {
    /// Follows `client`'s status.
    pub fn new(client: &XdsClient) -> Self {
        Self::following(client.status())
    }

    fn following(status: watch::Receiver<XdsStatus>) -> Self {
        Self {
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// Follows `client` from now on, instead of the client it followed: on every
    /// server this admin (or a clone) was installed on, the metrics and the config
    /// dump show `client`'s state.
    ///
    /// ```
    /// use proxy_core::config::Config;
    /// use proxy_xds::{XdsAdmin, XdsClient, XdsConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let section = XdsConfig::from_yaml("servers: [\"127.0.0.1:18000\"]\nnode: {id: n1}")?;
    /// let base = Config::from_yaml("listeners: [{name: l, address: 127.0.0.1:0, virtual_hosts: []}]")?;
    /// let first = XdsClient::new(section.clone(), base.clone());
    /// let admin = XdsAdmin::new(&first);
    /// let installed = admin.clone(); // as `install` keeps it
    /// // The first client is gone; another one takes its place.
    /// let again = XdsClient::new(section, base);
    /// admin.follow(&again);
    /// let mut metrics = String::new();
    /// installed.render_metrics(&mut metrics);
    /// assert!(metrics.contains("proxy_xds_connected 0\n"));
    /// # Ok(()) }
    /// ```
    pub fn follow(&self, client: &XdsClient) {
        self.follow_status(client.status());
    }

    fn follow_status(&self, status: watch::Receiver<XdsStatus>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// The followed client's status now.
    fn current(&self) -> XdsStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .borrow()
            .clone()
    }

    /// Adds the metrics to `server`'s `/stats/prometheus` and the config dump on
    /// [`CONFIG_DUMP_PATH`].
    #[must_use]
    pub fn install(self, server: Server) -> Server {
        let metrics = self.clone();
        server
            .with_metrics(Arc::new(move |out: &mut String| {
                metrics.render_metrics(out)
            }))
            .with_admin_page(
                CONFIG_DUMP_PATH,
                Arc::new(move |server: &Server| {
                    ("application/json".to_owned(), self.config_dump(server))
                }),
            )
    }

    /// Appends the client's series in the Prometheus text format:
    /// `proxy_xds_connected`, `proxy_xds_streams_total`, `proxy_xds_applied_total`
    /// (config swaps), and per type (`clusters`, `endpoints`, `listeners`,
    /// `routes`, `secrets`) `proxy_xds_resources`,
    /// `proxy_xds_responses_total{result="ack"|"nack"}`,
    /// `proxy_xds_updates_total{result="received"|"applied"|"coalesced"}`
    /// (responses received; accepted ones live as the newest of their type, or
    /// superseded by a newer one of their type in the same swap) and
    /// `proxy_xds_version_info{version}` (always 1, the version in its label).
    pub fn render_metrics(&self, out: &mut String) {
        let s = self.current();
        let _ = writeln!(out, "# TYPE proxy_xds_connected gauge");
        let _ = writeln!(out, "proxy_xds_connected {}", u8::from(s.connected));
        let _ = writeln!(out, "# TYPE proxy_xds_streams_total counter");
        let _ = writeln!(out, "proxy_xds_streams_total {}", s.streams);
        let _ = writeln!(out, "# TYPE proxy_xds_applied_total counter");
        let _ = writeln!(out, "proxy_xds_applied_total {}", s.applied);
        if s.types.is_empty() {
            return;
        }
        let _ = writeln!(out, "# TYPE proxy_xds_resources gauge");
        for (name, t) in &s.types {
            let _ = writeln!(
                out,
                "proxy_xds_resources{{type=\"{name}\"}} {}",
                t.resources
            );
        }
        let _ = writeln!(out, "# TYPE proxy_xds_responses_total counter");
        for (name, t) in &s.types {
            for (result, n) in [("ack", t.acks), ("nack", t.nacks)] {
                let _ = writeln!(
                    out,
                    "proxy_xds_responses_total{{type=\"{name}\",result=\"{result}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE proxy_xds_updates_total counter");
        for (name, t) in &s.types {
            for (result, n) in [
                ("received", t.received),
                ("applied", t.applied),
                ("coalesced", t.coalesced),
            ] {
                let _ = writeln!(
                    out,
                    "proxy_xds_updates_total{{type=\"{name}\",result=\"{result}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE proxy_xds_version_info gauge");
        for (name, t) in &s.types {
            let _ = writeln!(
                out,
                "proxy_xds_version_info{{type=\"{name}\",version=\"{}\"}} 1",
                escape_label(&t.version)
            );
        }
    }

    /// The config dump as pretty JSON: `connected`, `last_nack`, per type its
    /// `version`, `resources` (names), `acks`, `nacks`, `last_nack` and its
    /// `updates` (`received`, `applied`, `coalesced`, as in the metrics), and under
    /// `config` the listeners and clusters of `server`'s running config that came
    /// from the control plane (endpoints inside their clusters, routes inside their
    /// listeners). Secrets show by name only.
    pub fn config_dump(&self, server: &Server) -> String {
        let s = self.current();
        let names = |t: &str| -> BTreeSet<&str> {
            s.types
                .get(t)
                .map(|t| t.names.iter().map(String::as_str).collect())
                .unwrap_or_default()
        };
        let (clusters, listeners) = (names("clusters"), names("listeners"));
        let snapshot = server.snapshot();
        let config = &snapshot.config;
        let types: serde_json::Map<String, serde_json::Value> = s
            .types
            .iter()
            .map(|(name, t)| {
                let v = serde_json::json!({
                    "version": t.version,
                    "resources": t.names,
                    "acks": t.acks,
                    "nacks": t.nacks,
                    "last_nack": t.last_nack,
                    "updates": {
                        "received": t.received,
                        "applied": t.applied,
                        "coalesced": t.coalesced,
                    },
                });
                ((*name).to_owned(), v)
            })
            .collect();
        let dump = serde_json::json!({
            "connected": s.connected,
            "streams": s.streams,
            "applied": s.applied,
            "last_nack": s.last_nack,
            "types": types,
            "config": {
                "listeners": config.listeners.iter()
                    .filter(|l| listeners.contains(l.name.as_str())).collect::<Vec<_>>(),
                "clusters": config.clusters.iter()
                    .filter(|c| clusters.contains(c.name.as_str())).collect::<Vec<_>>(),
            },
        });
        serde_json::to_string_pretty(&dump)
            .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypeStatus;

    #[test]
    fn metrics_show_each_type_with_its_acks_nacks_and_version() {
        let mut status = XdsStatus {
            connected: true,
            streams: 2,
            applied: 3,
            ..XdsStatus::default()
        };
        status.types.insert(
            "clusters",
            TypeStatus {
                version: "v\"7".into(),
                resources: 2,
                names: vec!["a".into(), "b".into()],
                acks: 4,
                nacks: 1,
                last_nack: Some("cluster \"c\": outlier_detection: refused".into()),
                received: 9,
                applied: 3,
                coalesced: 1,
            },
        );
        let admin = XdsAdmin::following(watch::channel(status).1);
        let mut out = String::new();
        admin.render_metrics(&mut out);
        for line in [
            "proxy_xds_connected 1\n",
            "proxy_xds_streams_total 2\n",
            "proxy_xds_applied_total 3\n",
            "proxy_xds_resources{type=\"clusters\"} 2\n",
            "proxy_xds_responses_total{type=\"clusters\",result=\"ack\"} 4\n",
            "proxy_xds_responses_total{type=\"clusters\",result=\"nack\"} 1\n",
            "proxy_xds_version_info{type=\"clusters\",version=\"v\\\"7\"} 1\n",
            "proxy_xds_updates_total{type=\"clusters\",result=\"received\"} 9\n",
            "proxy_xds_updates_total{type=\"clusters\",result=\"applied\"} 3\n",
            "proxy_xds_updates_total{type=\"clusters\",result=\"coalesced\"} 1\n",
        ] {
            assert!(out.contains(line), "no {line:?} in\n{out}");
        }
    }

    #[test]
    fn clones_follow_the_client_followed_last() {
        let (first, first_rx) = watch::channel(XdsStatus {
            connected: true,
            streams: 1,
            ..XdsStatus::default()
        });
        let admin = XdsAdmin::following(first_rx);
        let installed = admin.clone();
        // The first client ends: its last status stays in the channel.
        drop(first);
        let (again, again_rx) = watch::channel(XdsStatus::default());
        admin.follow_status(again_rx);
        let mut out = String::new();
        installed.render_metrics(&mut out);
        assert!(out.contains("proxy_xds_connected 0\n"), "{out}");
        assert!(out.contains("proxy_xds_streams_total 0\n"), "{out}");
        // And goes on following it.
        again.send_modify(|s| {
            s.connected = true;
            s.streams = 1;
        });
        let mut out = String::new();
        installed.render_metrics(&mut out);
        assert!(out.contains("proxy_xds_connected 1\n"), "{out}");
    }

    #[test]
    fn no_type_no_per_type_series() {
        let admin = XdsAdmin::following(watch::channel(XdsStatus::default()).1);
        let mut out = String::new();
        admin.render_metrics(&mut out);
        assert!(out.contains("proxy_xds_connected 0\n"), "{out}");
        assert!(!out.contains("proxy_xds_resources"), "{out}");
    }
}
