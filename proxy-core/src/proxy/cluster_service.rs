//! The terminal service of a stack assembled in code: forward to a cluster.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use crate::{cluster::Cluster, BoxError, HttpRequest, HttpResponse};

/// Forwards each request to an endpoint of a cluster: the balancer picks it, the
/// request is prepared for the cluster's protocol (hop-by-hop headers removed, URI
/// form and version set, Host kept), sent on a pooled connection, and counted in the
/// endpoint's and the cluster's stats and extensions (an `OPTIONS` or `TRACE` with
/// `Max-Forwards: 0` is answered here instead, RFC 9110 7.6.2). No retries and no timeout: put
/// [`super::RetryLayer`] and `tower::timeout::TimeoutLayer` around it, and
/// [`super::LocalReplyLayer`] at the edge to turn its errors ([`crate::ProxyError`])
/// into 502/503/504 answers.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use proxy_core::{cluster::Cluster, proxy::{ClusterService, LocalReplyLayer}, Body, HttpRequest};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // An endpoint nobody listens on: the connect fails, the edge answers 503.
/// let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let cluster = Cluster::builder("app").endpoint(closed).build().unwrap();
/// let stack = ServiceBuilder::new()
///     .layer(LocalReplyLayer)
///     .timeout(Duration::from_secs(2))
///     .service(ClusterService::new(cluster));
/// let req = http::Request::builder().uri("/").header("host", "app").body(Body::empty()).unwrap();
/// let resp = stack.oneshot(req).await.unwrap();
/// assert_eq!(resp.status(), 503);
/// assert_eq!(resp.headers()["x-proxy-error"], "connect_failure");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
}

impl ClusterService {
    /// Forwards to `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

impl tower_service::Service<HttpRequest> for ClusterService {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        if let Some(answer) = super::final_recipient::answer_or_count_down(&mut req) {
            return Box::pin(std::future::ready(Ok(answer)));
        }
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let mut resp = cluster.send(req).await.map_err(BoxError::from)?;
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            super::strip_hop_by_hop(resp.headers_mut(), switching);
            Ok(resp)
        })
    }
}
