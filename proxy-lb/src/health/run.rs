//! Running a probe against an endpoint.

use std::time::Duration;

use proxy_core::Endpoint;

use super::probe::{http2_probe, http_probe, with_timeout, HttpVersion, ProbeConfig, ProbeError};

/// Probes `endpoint` once: opens a stream with [`Endpoint::connect`] (TCP plus the
/// cluster's transport) and, for an HTTP probe, sends the request and checks the
/// status; all within `timeout`.
///
/// # Errors
/// The [`ProbeError`] that failed it.
pub async fn probe_endpoint(
    endpoint: &Endpoint,
    probe: &ProbeConfig,
    timeout: Duration,
) -> Result<(), ProbeError> {
    with_timeout(timeout, async {
        let mut stream = endpoint
            .connect()
            .await
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        let host = endpoint.address.to_string();
        match probe {
            ProbeConfig::Http(http) if http.version == HttpVersion::Http2 => {
                http2_probe(stream, http, &host).await?;
            }
            ProbeConfig::Http(http) => {
                http_probe(&mut stream, http, &host).await?;
            }
            ProbeConfig::Tcp => {}
        }
        Ok(())
    })
    .await
}
