//! Running a probe against an endpoint.

use std::time::Duration;

use proxy_core::Endpoint;

use super::probe::{http_probe, with_timeout, ProbeConfig, ProbeError};

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
        if let Some(http) = &probe.http {
            http_probe(&mut stream, http, &endpoint.address.to_string()).await?;
        }
        Ok(())
    })
    .await
}
