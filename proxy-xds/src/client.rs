//! The ADS client: one stream to the control plane, responses validated, applied to a
//! running server with `Server::reload`, ACKed or NACKed; reconnection with back-off.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
};
use proxy_core::{config::Config, DisplayChain, Server, ServerError};
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};

use crate::{
    delta::DeltaState, state::AdsState, ApiType, Refusal, SecretSink, StreamError, Streams,
    XdsConfig, XdsStatus,
};

#[path = "coalesce.rs"]
mod coalesce;
#[path = "client_delta.rs"]
mod delta;
#[path = "client_drive.rs"]
mod drive;
#[path = "client_split.rs"]
mod split;

use drive::AdsLink;

/// An xDS client for CDS and EDS, LDS and RDS when [`XdsConfig::listeners`] is
/// set, and SDS for [`XdsConfig::secrets`] (into the sink of
/// [`XdsClient::with_secrets`]), that drives a running [`Server`]: state of the
/// world or delta ([`XdsConfig::api_type`]), over ADS or a stream per type
/// ([`XdsConfig::streams`]). The server keeps the last accepted config while the
/// control plane is away.
///
/// # Example
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_xds::{XdsClient, XdsConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let base = Config::from_yaml(r#"
/// listeners:
///   - name: web
///     address: 127.0.0.1:8080
///     virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {}, cluster: app}]}]
/// "#)?;
/// let xds = XdsClient::new(XdsConfig::from_yaml("servers: [\"127.0.0.1:18000\"]\nnode: {id: n1}")?, base);
/// let mut registry = Registry::default();
/// // proxy_lb::register(&mut registry); // for least_request, ring_hash, maglev, random
/// let server = Server::new(xds.initial_config(), registry)?;
/// let rt = tokio::runtime::Runtime::new()?;
/// rt.spawn(xds.run(server.clone()));
/// server.run()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct XdsClient {
    config: XdsConfig,
    base: Arc<Config>,
    status: watch::Sender<XdsStatus>,
    secrets: Option<Arc<dyn SecretSink>>,
}

impl XdsClient {
    /// A client for the control plane of `config`, adding what it receives to `base`
    /// (the static config: listeners, routes, static clusters).
    pub fn new(config: XdsConfig, base: Config) -> Self {
        Self {
            config,
            base: Arc::new(base),
            status: watch::channel(XdsStatus::default()).0,
            secrets: None,
        }
    }

    /// Sends the secrets of SDS ([`XdsConfig::secrets`]) to `sink`, before their
    /// ACK; a secret the sink refuses is NACKed. Without a sink, secrets that
    /// arrive are NACKed.
    #[must_use]
    pub fn with_secrets(mut self, sink: Arc<dyn SecretSink>) -> Self {
        self.secrets = Some(sink);
        self
    }

    /// The config to start the server with: `base`, with an empty cluster for each
    /// cluster a route names that `base` lacks (it answers 503 until the control
    /// plane sends it). proxy-core needs one listener at least: a proxy whose
    /// listeners all come over LDS starts with a static one.
    pub fn initial_config(&self) -> Config {
        AdsState::default().config(&self.base)
    }

    /// Follows the client's progress.
    pub fn status(&self) -> watch::Receiver<XdsStatus> {
        self.status.subscribe()
    }

    /// Runs until the task is dropped: connects to each server in turn, applies what
    /// the control plane sends to `server`, reconnects after a back-off when the
    /// stream ends. Speaks state of the world or delta as [`XdsConfig::api_type`]
    /// says. Spawn it on the runtime of your choice: responses are translated and
    /// configs built and swapped on that runtime's blocking pool, never on its
    /// async workers, at most one swap per [`XdsConfig::apply_min_interval`].
    pub async fn run(self, server: Server) {
        let mut session = match self.config.api_type {
            ApiType::Delta => Session::Delta(Arc::new(
                DeltaState::new(self.config.listeners).with_secrets(&self.config.secrets),
            )),
            _ => Session::Sotw(Arc::new(
                AdsState::new(self.config.listeners).with_secrets(&self.config.secrets),
            )),
        };
        let mut backoff = self.config.backoff.initial;
        let mut last_applied: Option<Arc<Config>> = None;
        for attempt in 0usize.. {
            let Some(address) =
                (self.config.servers).get(attempt % self.config.servers.len().max(1))
            else {
                tracing::error!("xds: no control-plane address configured");
                return;
            };
            let mut got = false;
            let (applied, got_one) = (&mut last_applied, &mut got);
            let result = match (&mut session, self.config.streams) {
                (Session::Sotw(state), Streams::PerType) => {
                    self.split_stream(address, state, &server, applied, got_one)
                        .await
                }
                (Session::Sotw(state), _) => {
                    self.stream(address, state, &server, applied, got_one).await
                }
                (Session::Delta(state), Streams::PerType) => {
                    self.split_delta_stream(address, state, &server, applied, got_one)
                        .await
                }
                (Session::Delta(state), _) => {
                    self.delta_stream(address, state, &server, applied, got_one)
                        .await
                }
            };
            self.status.send_modify(|s| s.connected = false);
            match result {
                Err(e) => tracing::warn!(%address, error = %DisplayChain(&e), "xds stream ended"),
                Ok(()) => tracing::warn!(%address, "xds stream ended"),
            }
            if got {
                backoff = self.config.backoff.initial;
            }
            let jittered = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            tokio::time::sleep(jittered).await;
            backoff = (backoff * 2).min(self.config.backoff.max);
        }
    }

    /// A client of the ADS service at `address`, connected.
    async fn connect(
        &self,
        address: &str,
    ) -> Result<AggregatedDiscoveryServiceClient<Channel>, StreamError> {
        let channel = self.channel(address).await?;
        let max = self.config.max_message_bytes.as_usize();
        Ok(AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max))
    }

    /// A connection to the control plane at `address`.
    async fn channel(&self, address: &str) -> Result<Channel, StreamError> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|source| StreamError::Address {
                address: address.into(),
                source,
            })?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.config.keepalive_interval)
            .keep_alive_timeout(self.config.request_timeout)
            .keep_alive_while_idle(true);
        let connecting = async {
            match &self.config.tls {
                None => endpoint.connect().await,
                Some(tls) => {
                    let host = endpoint.uri().host().unwrap_or_default();
                    let transport =
                        crate::tls::transport(tls, host).map_err(|source| StreamError::Tls {
                            address: address.into(),
                            source,
                        });
                    match transport {
                        Ok(transport) => {
                            let connector = crate::tls::TlsConnect { transport };
                            endpoint.connect_with_connector(connector).await
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            .map_err(|source| StreamError::Connect {
                address: address.into(),
                source,
            })
        };
        let channel = tokio::time::timeout(self.config.connect_timeout * 2, connecting)
            .await
            .map_err(|_| {
                StreamError::Status(tonic::Status::deadline_exceeded("connect timed out"))
            })??;
        Ok(channel)
    }

    /// One state-of-the-world stream, until it ends. `got` is set once a response
    /// arrived.
    async fn stream(
        &self,
        address: &str,
        state: &mut Arc<AdsState>,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut client = self.connect(address).await?;
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(64);
        for req in Arc::make_mut(state).open(self.config.node()) {
            let _ = tx.send(req).await;
        }
        let inbound = client
            .stream_aggregated_resources(receiver_stream(rx))
            .await?
            .into_inner();
        self.opened(address);
        let mut link = AdsLink::<AdsState> { tx, inbound };
        self.drive(&mut link, state, server, last_applied, got)
            .await
    }

    /// Counts a stream as open.
    fn opened(&self, address: &str) {
        self.status.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });
        tracing::info!(%address, api_type = ?self.config.api_type, "xds stream open");
    }
}

/// The requests of one stream, as the stream tonic sends.
fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

/// What one protocol variant keeps across streams: the live state.
enum Session {
    Sotw(Arc<AdsState>),
    Delta(Arc<DeltaState>),
}

/// `Server::reload` (blocking: call it off the async workers); a refusal names the
/// xDS cluster or listener when the error is in one.
fn reload(server: &Server, config: Config, base: &Config) -> Result<(), Refusal> {
    let names: Vec<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
    let listeners: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
    match server.reload(config) {
        Ok(()) => Ok(()),
        Err(ServerError::Config(e)) => {
            if e.path.starts_with("listeners[") {
                Err(locate_in(
                    "listeners[",
                    "listener",
                    &e.path,
                    &e.reason,
                    &listeners,
                    base.listeners.len(),
                ))
            } else {
                Err(locate(&e.path, &e.reason, &names, base.clusters.len()))
            }
        }
        Err(e) => Err(Refusal::new(
            "",
            "",
            format!("the resulting config is refused: {}", DisplayChain(&e)),
        )),
    }
}

/// `clusters[7].lb.config.table_size` of the merged config as `cluster "web":
/// lb.config.table_size` when cluster 7 came from the control plane.
fn locate(path: &str, reason: &str, names: &[String], statics: usize) -> Refusal {
    locate_in("clusters[", "cluster", path, reason, names, statics)
}

/// [`locate`] for a list starting with `prefix` (`listeners[`) of resources of
/// `kind` (`listener`).
fn locate_in(
    prefix: &str,
    kind: &str,
    path: &str,
    reason: &str,
    names: &[String],
    statics: usize,
) -> Refusal {
    let found = path.strip_prefix(prefix).and_then(|rest| {
        let (index, tail) = rest.split_once(']')?;
        let i: usize = index.parse().ok()?;
        let name = names.get(i).filter(|_| i >= statics)?;
        Some((name.clone(), tail.trim_start_matches('.').to_owned()))
    });
    match found {
        Some((name, tail)) => Refusal::new(format!("{kind} {name:?}"), tail, reason),
        None => Refusal::new(
            "",
            path,
            format!("the resulting config is refused: {reason}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_errors_name_the_xds_cluster() {
        let names = vec!["static".to_owned(), "web".to_owned()];
        let r = locate(
            "clusters[1].lb.config.table_size",
            "must be prime",
            &names,
            1,
        );
        assert_eq!(
            r.to_string(),
            "cluster \"web\": lb.config.table_size: must be prime"
        );
        let r = locate("clusters[0].name", "bad", &names, 1);
        assert_eq!(r.path, "clusters[0].name");
        let r = locate("listeners[0].name", "bad", &names, 1);
        assert_eq!(r.path, "listeners[0].name");
        let r = locate_in(
            "listeners[",
            "listener",
            "listeners[1].virtual_hosts[0].routes[2].cluster",
            "bad",
            &names,
            1,
        );
        assert_eq!(
            r.to_string(),
            "listener \"web\": virtual_hosts[0].routes[2].cluster: bad"
        );
    }
}
