//! The JWKS client: one `GET` over HTTP/1.1, in clear or over rustls (ring) with the
//! webpki roots or the CA file the config names, within a deadline and a body limit.

use std::{fmt, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use proxy_core::BoxError;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::config::RemoteJwks;
use crate::ConfigError;

/// The largest JWKS document accepted.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    #[error("tls handshake failed")]
    Tls(#[source] std::io::Error),
    #[error("http exchange failed")]
    Http(#[source] hyper::Error),
    #[error("status {0}")]
    Status(http::StatusCode),
    #[error("body failed")]
    Body(#[source] BoxError),
}

/// Fetches one URL.
#[derive(Clone)]
pub(crate) struct Fetcher {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A client for `cfg.url`; `field` is the path of the `remote` section.
    pub(crate) fn new(cfg: &RemoteJwks, field: &str) -> Result<Self, ConfigError> {
        let url_field = format!("{field}.url");
        let bad = |why: &str| ConfigError::invalid(&url_field, format!("{:?} {why}", cfg.url));
        let uri: Uri = cfg.url.parse().map_err(|_| bad("is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("is not an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if cfg.timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{field}.timeout"),
                "must be more than 0s",
            ));
        }
        let tls = if https {
            let roots = roots(cfg.ca_path.as_deref(), &format!("{field}.ca_path"))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::invalid(field, e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone()).map_err(|_| bad("has a bad host"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            if cfg.ca_path.is_some() {
                return Err(ConfigError::invalid(
                    format!("{field}.ca_path"),
                    "only applies to an https:// url",
                ));
            }
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            tls,
            timeout: cfg.timeout,
        })
    }

    pub(crate) fn url(&self) -> &Uri {
        &self.uri
    }

    /// The document's bytes, if the server answers 200 within the deadline.
    pub(crate) async fn fetch(&self) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.timeout, self.exchange())
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn exchange(&self) -> Result<Bytes, FetchError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(FetchError::Tls)?;
                self.get(TokioIo::new(tls)).await
            }
            None => self.get(TokioIo::new(tcp)).await,
        }
    }

    async fn get<T>(&self, io: T) -> Result<Bytes, FetchError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(FetchError::Http)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Body(e.into()))?;
        let result = async {
            let resp = send.send_request(req).await.map_err(FetchError::Http)?;
            if resp.status() != http::StatusCode::OK {
                return Err(FetchError::Status(resp.status()));
            }
            Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(FetchError::Body)
        }
        .await;
        driver.abort();
        result
    }
}

/// The CA certificates of `path`, or the webpki roots.
fn roots(path: Option<&Path>, field: &str) -> Result<rustls::RootCertStore, ConfigError> {
    let Some(path) = path else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(field, format!("{}: {e}", path.display())))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            ConfigError::invalid(field, format!("{}: bad PEM: {e}", path.display()))
        })?;
        store.add(cert).map_err(|e| {
            ConfigError::invalid(field, format!("{}: bad certificate: {e}", path.display()))
        })?;
    }
    if store.is_empty() {
        return Err(ConfigError::invalid(
            field,
            format!("{}: no certificate", path.display()),
        ));
    }
    Ok(store)
}

/// An error and its causes, `a: b: c`.
pub(crate) struct DisplayChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_name_the_field() {
        for url in ["ftp://x/jwks", "not a url", "/relative"] {
            let err = Fetcher::new(&RemoteJwks::new(url), "jwks.remote").unwrap_err();
            assert_eq!(err.field(), "jwks.remote.url", "{url}");
        }
        let mut cfg = RemoteJwks::new("http://127.0.0.1/jwks");
        cfg.ca_path = Some("/nonexistent.pem".into());
        assert_eq!(
            Fetcher::new(&cfg, "jwks.remote").unwrap_err().field(),
            "jwks.remote.ca_path"
        );
        cfg.url = "https://idp.example/jwks".into();
        assert_eq!(
            Fetcher::new(&cfg, "jwks.remote").unwrap_err().field(),
            "jwks.remote.ca_path"
        );
        cfg.ca_path = None;
        let f = Fetcher::new(&cfg, "jwks.remote").unwrap();
        assert_eq!(f.port, 443);
    }
}
