//! The request stack of a named listener, as a service for other front ends (HTTP/3,
//! an in-process caller) that follows reloads.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tower::ServiceExt;

use super::{listen::ListenerRuntime, lock, Server, ServerError};
use crate::{BoxError, BoxHttp, ConfigError, HttpRequest, HttpResponse};

impl Server {
    /// The request stack of the TCP listener `listener`, as a service that other front
    /// ends (an HTTP/3 listener, say) serve: each request runs the HTTP filters and
    /// routes of that listener as of the config current when it starts, exactly as a
    /// request on the listener's own connections does. A reload that changes the
    /// listener's routes or filters applies to the next request; requests in flight
    /// finish on the stack they started with.
    ///
    /// What the listener's connection loop does around the stack (its network
    /// filters, connection limits, the top-level access log) is not part of it.
    ///
    /// Until the server runs, and after the listener is removed by a reload, a
    /// request fails with [`ListenerNotRunning`].
    ///
    /// # Example
    /// ```
    /// use proxy_core::{config::Config, Body, Registry, Server};
    /// use tower::ServiceExt;
    ///
    /// // One route, to a cluster with no endpoints: answered 503 by the proxy itself.
    /// let yaml = r#"
    /// listeners:
    ///   - name: web
    ///     address: 127.0.0.1:0
    ///     virtual_hosts:
    ///       - name: all
    ///         domains: ["*"]
    ///         routes: [{match: {path: {prefix: /}}, cluster: app}]
    /// clusters: [{name: app, endpoints: []}]
    /// "#;
    /// let server = Server::new(Config::from_yaml(yaml)?, Registry::default())?;
    /// let service = server.http_service("web")?;
    /// assert!(server.http_service("nope").is_err());
    ///
    /// let running = server.clone();
    /// let thread = std::thread::spawn(move || running.run_until(std::future::pending()));
    /// while server.listener_addresses().is_empty() {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let response = rt.block_on(service.oneshot(
    ///     http::Request::builder().uri("http://x/").body(Body::empty())?,
    /// ))?;
    /// assert_eq!(response.status(), 503);
    /// server.shutdown();
    /// thread.join().expect("server thread")?;
    /// # Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    /// [`ServerError::Config`] (path `listeners`) when the current config has no
    /// listener named `listener`.
    pub fn http_service(&self, listener: &str) -> Result<BoxHttp, ServerError> {
        let known = self
            .snapshot()
            .config
            .listeners
            .iter()
            .any(|l| l.name == listener);
        if !known {
            return Err(ServerError::Config(ConfigError::new(
                "listeners",
                format!("no listener named {listener:?}"),
            )));
        }
        Ok(BoxHttp::new(ListenerService {
            server: self.clone(),
            name: listener.into(),
            cached: None,
        }))
    }
}

/// A request for a listener that is not running: the server has not started yet, or
/// a reload removed the listener.
#[derive(Debug, thiserror::Error)]
#[error("listener {name:?} is not running")]
pub struct ListenerNotRunning {
    name: Arc<str>,
}

impl ListenerNotRunning {
    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Each clone keeps the running listener it found last and looks it up again only
/// when that one stopped (removed, moved by a reload, or draining): no lock per
/// request while it runs, one `ArcSwap` load of its stack.
#[derive(Clone)]
struct ListenerService {
    server: Server,
    name: Arc<str>,
    cached: Option<Arc<ListenerRuntime>>,
}

impl ListenerService {
    fn current(&mut self) -> Option<&Arc<ListenerRuntime>> {
        let stale = self.cached.as_ref().is_none_or(|rt| *rt.stop.borrow());
        if stale {
            self.cached = lock(&self.server.inner.listeners).get(&*self.name).cloned();
        }
        self.cached.as_ref()
    }
}

impl tower_service::Service<HttpRequest> for ListenerService {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = futures_util::future::Either<
        tower::util::Oneshot<BoxHttp, HttpRequest>,
        std::future::Ready<Result<HttpResponse, BoxError>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        match self.current() {
            Some(rt) => {
                futures_util::future::Either::Left(rt.settings.load().service.clone().oneshot(req))
            }
            None => futures_util::future::Either::Right(std::future::ready(Err(Box::new(
                ListenerNotRunning {
                    name: self.name.clone(),
                },
            )
                as BoxError))),
        }
    }
}
