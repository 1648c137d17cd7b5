//! The admin endpoint: `/ready`, `/stats/prometheus`, `/config_dump`, `/clusters`,
//! `POST /reload`, and the pages and metrics added with [`Server::with_admin_page`]
//! and [`Server::with_metrics`]. Served on its own listener with hyper; never on the
//! request path.

use std::{
    fmt::Write as _,
    sync::{atomic::Ordering, Arc},
};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;

use super::{lock, DisplayChain, Server};
use crate::metrics::{escape_label, render_conns, render_requests};

pub(super) async fn serve(listener: tokio::net::TcpListener, server: Server) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listening");
    }
    // Once handed off to a new process the admin socket is the successor's: this
    // server stops accepting on it, so that every scrape and `/ready` after the
    // hand-off is answered by the new process (a drain on SIGTERM keeps answering,
    // `/ready` with 503).
    let mut drain = server.inner.drain.subscribe();
    let mut draining = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = drain.wait_for(|d| *d), if !draining => {
                draining = true;
                if server.inner.handed_off.load(Ordering::Relaxed) {
                    tracing::info!("admin handed off: no longer accepting");
                    return;
                }
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let server = server.clone();
                async move {
                    // A reload builds the whole snapshot (Maglev tables, TLS
                    // material): off the worker, so that traffic keeps flowing.
                    if req.method() == Method::POST && req.uri().path() == "/reload" {
                        let resp = tokio::task::spawn_blocking(move || handle(&server, req))
                            .await
                            .unwrap_or_else(|_| {
                                reply(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "text/plain",
                                    "reload failed\n",
                                )
                            });
                        return Ok::<_, std::convert::Infallible>(resp);
                    }
                    Ok::<_, std::convert::Infallible>(handle(&server, req))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// An admin page added with [`Server::with_admin_page`]: called with the server on
/// each `GET` of its path, on the admin's thread, it returns the content type and the
/// body.
pub type AdminPage = Arc<dyn Fn(&Server) -> (String, String) + Send + Sync>;

/// Metrics added with [`Server::with_metrics`]: called on each scrape of
/// `/stats/prometheus`, it appends series in the Prometheus text format.
pub type MetricsHook = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What was added to the admin endpoint.
#[derive(Default)]
pub(super) struct Extensions {
    pages: Vec<(String, AdminPage)>,
    metrics: Vec<MetricsHook>,
}

// === impl Server ===

impl Server {
    /// Serves `page` on `GET path` of the admin endpoint (a path of its own, such as
    /// `/config_dump/xds`: the built-in paths keep their meaning; a path added twice
    /// serves the last page). Pages run on the admin's thread, never on the request
    /// path.
    ///
    /// # Example
    /// ```
    /// use std::sync::Arc;
    /// use proxy_core::{config::Config, Registry, Server};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_yaml(r#"
    /// listeners:
    ///   - name: web
    ///     address: 127.0.0.1:0
    ///     virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {}, cluster: app}]}]
    /// clusters: [{name: app, endpoints: ["127.0.0.1:9000"]}]
    /// "#)?;
    /// let server = Server::new(config, Registry::default())?
    ///     .with_admin_page("/hello", Arc::new(|_: &Server| ("text/plain".into(), "hi\n".into())))
    ///     .with_metrics(Arc::new(|out: &mut String| out.push_str("my_up 1\n")));
    /// # let _ = server; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_admin_page(self, path: impl Into<String>, page: AdminPage) -> Self {
        let path = path.into();
        let mut ext = lock(&self.inner.admin_extensions);
        ext.pages.retain(|(p, _)| *p != path);
        ext.pages.push((path, page));
        drop(ext);
        self
    }

    /// Appends what `metrics` writes to every scrape of `/stats/prometheus`, after
    /// the server's own series.
    #[must_use]
    pub fn with_metrics(self, metrics: MetricsHook) -> Self {
        lock(&self.inner.admin_extensions).metrics.push(metrics);
        self
    }

    fn admin_page(&self, path: &str) -> Option<AdminPage> {
        let ext = lock(&self.inner.admin_extensions);
        ext.pages
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, page)| page.clone())
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn handle(server: &Server, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready") => {
            if server.is_draining() {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            } else {
                reply(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        (&Method::GET, "/stats/prometheus") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            prometheus(server),
        ),
        (&Method::GET, "/config_dump") => reply(
            StatusCode::OK,
            "application/json",
            server.snapshot().config.to_json(),
        ),
        (&Method::GET, "/clusters") => {
            reply(StatusCode::OK, "application/json", clusters_json(server))
        }
        (&Method::POST, "/reload") => match server.reload_from_source() {
            Ok(()) => {
                tracing::info!("config reloaded (admin)");
                reply(StatusCode::OK, "text/plain", "reloaded\n")
            }
            Err(e) => {
                tracing::error!(error = %DisplayChain(&e), "config reload refused (admin)");
                reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("{}\n", DisplayChain(&e)),
                )
            }
        },
        (_, "/ready" | "/stats/prometheus" | "/config_dump" | "/clusters" | "/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        (&Method::GET, path) if server.admin_page(path).is_some() => {
            let Some(page) = server.admin_page(path) else {
                return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n");
            };
            let (content_type, body) = page(server);
            let mut r = reply(StatusCode::OK, "text/plain", body);
            if let Ok(v) = http::HeaderValue::try_from(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "admin: GET /ready /stats/prometheus /config_dump /clusters; POST /reload\n",
        ),
    }
}

pub(super) fn prometheus(server: &Server) -> String {
    let snapshot = server.snapshot();
    let mut out = String::with_capacity(16 * 1024);
    let listeners = server
        .inner
        .listeners
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let mut names: Vec<_> = listeners.keys().cloned().collect();
    names.sort();

    let conn_items: Vec<_> = names
        .iter()
        .filter_map(|n| listeners.get(n))
        .map(|l| (format!("listener=\"{}\"", escape_label(&l.name)), &*l.stats))
        .collect();
    render_conns(&mut out, "proxy_listener", &conn_items);
    let routings: Vec<_> = names
        .iter()
        .filter_map(|n| listeners.get(n))
        .map(|l| (l.name.clone(), l.routing.load_full()))
        .collect();
    let listener_items: Vec<_> = routings
        .iter()
        .map(|(n, r)| (format!("listener=\"{}\"", escape_label(n)), &*r.stats))
        .collect();
    render_requests(&mut out, "proxy_listener", &listener_items);
    let route_items: Vec<_> = routings
        .iter()
        .flat_map(|(n, r)| {
            r.routes.routes().map(move |route| {
                (
                    format!(
                        "listener=\"{}\",vhost=\"{}\",route=\"{}\"",
                        escape_label(n),
                        escape_label(&route.vhost),
                        escape_label(&route.name)
                    ),
                    &*route.stats,
                )
            })
        })
        .collect();
    render_requests(&mut out, "proxy_route", &route_items);

    let mut clusters: Vec<_> = snapshot.clusters.values().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let cluster_items: Vec<_> = clusters
        .iter()
        .map(|c| (format!("cluster=\"{}\"", escape_label(&c.name)), &*c.stats))
        .collect();
    render_requests(&mut out, "proxy_cluster", &cluster_items);
    crate::cluster::render_breakers(&mut out, &clusters);
    let endpoint_labels = |c: &crate::cluster::Cluster, e: &crate::cluster::Endpoint| {
        format!(
            "cluster=\"{}\",endpoint=\"{}\"",
            escape_label(&c.name),
            e.address
        )
    };
    let endpoint_items: Vec<_> = clusters
        .iter()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .map(move |e| (endpoint_labels(c, e), &e.stats))
        })
        .collect();
    render_requests(&mut out, "proxy_endpoint", &endpoint_items);
    let upstream_items: Vec<_> = clusters
        .iter()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .map(move |e| (endpoint_labels(c, e), &e.upstream.open.stats))
        })
        .collect();
    render_conns(&mut out, "proxy_endpoint_upstream", &upstream_items);
    if !clusters.is_empty() {
        let _ = writeln!(out, "# TYPE proxy_endpoint_healthy gauge");
        for c in &clusters {
            for e in c.endpoints.iter() {
                let _ = writeln!(
                    out,
                    "proxy_endpoint_healthy{{{}}} {}",
                    endpoint_labels(c, e),
                    u8::from(e.is_healthy())
                );
            }
        }
        let _ = writeln!(out, "# TYPE proxy_endpoint_upstream_idle_connections gauge");
        for c in &clusters {
            for e in c.endpoints.iter() {
                let _ = writeln!(
                    out,
                    "proxy_endpoint_upstream_idle_connections{{{}}} {}",
                    endpoint_labels(c, e),
                    e.upstream.idle_connections()
                );
            }
        }
    }
    if snapshot.config.access_log.is_some() {
        let counts = &server.inner.access_log_counts;
        let _ = writeln!(out, "# TYPE proxy_access_log_lines_total counter");
        for (result, n) in [("written", counts.written()), ("dropped", counts.dropped())] {
            let _ = writeln!(
                out,
                "proxy_access_log_lines_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# TYPE proxy_access_log_write_errors_total counter");
        let _ = writeln!(
            out,
            "proxy_access_log_write_errors_total {}",
            counts.failed()
        );
    }
    snapshot.render_extra_metrics(&mut out);
    let hooks = lock(&server.inner.admin_extensions).metrics.clone();
    for hook in hooks {
        hook(&mut out);
    }
    // Counters and histograms carried in by a hot upgrade go on from the old
    // process's values.
    let carried = server.inner.metric_offsets.load();
    if carried.is_empty() {
        out
    } else {
        carried.apply(&out)
    }
}

fn clusters_json(server: &Server) -> String {
    let snapshot = server.snapshot();
    let mut clusters: Vec<_> = snapshot.clusters.values().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let v: Vec<_> = clusters
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": &*c.name,
                "protocol": c.config.protocol,
                "lb_policy": c.config.lb.typed,
                "extensions": c.config.extensions.iter().zip(c.extensions.iter()).map(|(cfg, x)| serde_json::json!({
                    "typed": cfg.typed,
                    "status": x.status(),
                })).collect::<Vec<_>>(),
                "endpoints": c.endpoints.iter().map(|e| serde_json::json!({
                    "address": e.address.to_string(),
                    "weight": e.weight.get(),
                    "metadata": &*e.metadata,
                    "healthy": e.is_healthy(),
                    "health_flags": e.health_flags().names(),
                    "protocol": e.upstream.protocol(),
                    "open_connections": e.open_connections(),
                    "idle_connections": e.upstream.idle_connections(),
                    "requests": e.stats.requests(),
                    "active_requests": e.stats.active(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "clusters": v })).unwrap_or_default()
}
