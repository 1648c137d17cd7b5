//! A `proxy_core::Server` run in-process, on a thread of its own, for a test.

use std::{
    net::SocketAddr,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use http::StatusCode;
use proxy_core::{config::Config, DisplayChain, Registry, Server};

/// How long [`TestServer::start`] waits for the listeners to be bound.
const BIND_LIMIT: Duration = Duration::from_secs(10);

/// A proxy server running in-process (`Server::run_until` on a thread of its own);
/// stopped (drained, then joined) on drop.
///
/// ```
/// use proxy_core::Registry;
/// use proxy_test_support::{client, yaml, TestServer, Upstream};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let up = Upstream::named("app");
/// let proxy = TestServer::start(
///     &yaml::config(&[yaml::listener("main", "app", &[])], &[yaml::cluster("app", &[up.addr], &[])]),
///     Registry::default(),
/// );
/// let r = client::get(proxy.addr("main"), "/", &[]).await;
/// assert_eq!(r.text(), "app");
/// # });
/// ```
#[derive(Debug)]
#[must_use = "the server stops when its handle drops"]
pub struct TestServer {
    server: Server,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Starts a server for `yaml` with `registry`; returns once its listeners (and its
    /// admin listener, if any) are bound.
    ///
    /// # Panics
    /// When the config is refused or the server cannot start; the message names the
    /// cause and quotes the YAML.
    pub fn start(yaml: &str, registry: Registry) -> Self {
        Self::try_start(yaml, registry).unwrap_or_else(|e| panic!("{e}\n--- config ---\n{yaml}"))
    }

    /// [`TestServer::start`], or the error as the operator reads it (the error and
    /// its causes, `a: b: c`).
    ///
    /// # Errors
    /// When the YAML does not parse, the config is refused, or a listener cannot bind.
    pub fn try_start(yaml: &str, registry: Registry) -> Result<Self, String> {
        let config = Config::from_yaml(yaml).map_err(|e| e.to_string())?;
        let server = Server::new(config, registry).map_err(|e| DisplayChain(&e).to_string())?;
        Self::run(server)
    }

    /// Runs a server built by the caller (`Server::new`, `with_config_source`).
    ///
    /// # Errors
    /// When a listener cannot bind.
    pub fn run(server: Server) -> Result<Self, String> {
        let runner = server.clone();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || {
                runner
                    .run_until(std::future::pending())
                    .map_err(|e| DisplayChain(&e).to_string())
            })
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        let mut me = Self {
            server,
            thread: Some(thread),
        };
        me.wait_bound()?;
        Ok(me)
    }

    /// Waits until every configured listener and the admin listener are bound, or
    /// the server thread has ended (a bind failure).
    fn wait_bound(&mut self) -> Result<(), String> {
        let snapshot = self.server.snapshot();
        let want = snapshot.config.listeners.len();
        // An admin listener on port 0 cannot be found again: not waited for.
        let admin = (snapshot.config.admin.as_ref())
            .map(|a| a.address)
            .filter(|a| a.port() != 0);
        let deadline = Instant::now() + BIND_LIMIT;
        loop {
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(match self.thread.take().map(JoinHandle::join) {
                    Some(Ok(Err(e))) => e,
                    Some(Err(_)) => "the server thread panicked".into(),
                    _ => "the server stopped before its listeners were bound".into(),
                });
            }
            let bound = self.server.listener_addresses().len() >= want
                && admin.is_none_or(|a| std::net::TcpStream::connect(a).is_ok());
            if bound {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("listeners not bound within {BIND_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The running server (snapshot, reload, shutdown).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The bound address of listener `name`, as the server reports it (`unix:PATH`
    /// for a Unix socket).
    ///
    /// # Panics
    /// When there is no such listener.
    pub fn addr_text(&self, name: &str) -> String {
        self.server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    /// The bound address of TCP listener `name` (the actual port when the config
    /// asked for port 0).
    ///
    /// # Panics
    /// When there is no such TCP listener.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let text = self.addr_text(name);
        text.parse()
            .unwrap_or_else(|e| panic!("listener {name} at {text}: {e}"))
    }

    /// The bound port of TCP listener `name`.
    ///
    /// # Panics
    /// When there is no such TCP listener.
    pub fn port(&self, name: &str) -> u16 {
        self.addr(name).port()
    }

    /// The admin listener's address (give it a fixed one, [`free_addr`](crate::free_addr):
    /// the port of `127.0.0.1:0` cannot be found again).
    ///
    /// # Panics
    /// When the config has no admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.server
            .snapshot()
            .config
            .admin
            .as_ref()
            .map(|a| a.address)
            .expect("the config has an admin listener")
    }

    /// `GET path` on the admin listener: the status and the body as text.
    ///
    /// # Panics
    /// When there is no admin listener or it does not answer.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let r = crate::client::get(self.admin_addr(), path, &[]).await;
        (r.status, r.text())
    }

    /// Validates and applies `yaml` (`Server::reload`).
    ///
    /// # Errors
    /// The refusal as the operator reads it; the running config stays.
    pub fn reload(&self, yaml: &str) -> Result<(), String> {
        let config = Config::from_yaml(yaml).map_err(|e| e.to_string())?;
        self.server
            .reload(config)
            .map_err(|e| DisplayChain(&e).to_string())
    }

    /// Drains the server and waits for its thread.
    ///
    /// # Panics
    /// When the server's run ended in an error or a panic.
    pub fn stop(&mut self) {
        if let Some(Err(e)) = self.finish() {
            panic!("the server failed: {e}");
        }
    }

    fn finish(&mut self) -> Option<Result<(), String>> {
        self.server.shutdown();
        let thread = self.thread.take()?;
        Some(
            thread
                .join()
                .unwrap_or_else(|_| Err("the server thread panicked".into())),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.finish() {
            if !std::thread::panicking() {
                panic!("the server failed: {e}");
            }
        }
    }
}

/// The error `Server::new` gives for `yaml` with `registry` (or the YAML's parse
/// error), as the operator reads it; `None` when the config is accepted. Starts
/// nothing.
pub fn load_error(yaml: &str, registry: Registry) -> Option<String> {
    match Config::from_yaml(yaml) {
        Err(e) => Some(e.to_string()),
        Ok(config) => Server::new(config, registry)
            .err()
            .map(|e| DisplayChain(&e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client, yaml, Upstream};

    fn doc(upstream: SocketAddr, admin: SocketAddr) -> String {
        format!(
            "admin: {{ address: \"{admin}\" }}\n{}",
            yaml::config(
                &[yaml::listener("main", "app", &[])],
                &[yaml::cluster("app", &[upstream], &[])],
            )
        )
    }

    #[tokio::test]
    async fn proxies_serves_admin_reloads_and_stops() {
        let (a, b) = (Upstream::named("a"), Upstream::named("b"));
        let admin = crate::free_addr();
        let mut proxy = TestServer::start(&doc(a.addr, admin), Registry::default());
        let addr = proxy.addr("main");
        assert_eq!(client::get(addr, "/", &[]).await.text(), "a");
        let (status, _) = proxy.admin_get("/ready").await;
        assert_eq!(status, StatusCode::OK);
        proxy.reload(&doc(b.addr, admin)).expect("reload");
        assert_eq!(client::get(addr, "/", &[]).await.text(), "b");
        assert!(proxy.reload("listeners: [").is_err());
        proxy.stop();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn refusals_read_as_the_operator_reads_them() {
        let bad = yaml::config(&[yaml::listener("main", "nope", &[])], &[]);
        let err = TestServer::try_start(&bad, Registry::default()).expect_err("refused");
        assert!(err.contains("nope"), "{err}");
        assert_eq!(load_error(&bad, Registry::default()), Some(err));
    }
}
