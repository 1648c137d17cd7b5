//! Checks of the config that serde cannot express: runtime, cluster and listener limits.

use std::collections::HashSet;

use crate::{
    config::{Config, ListenerConfig},
    ConfigError,
};

pub(super) fn validate_runtime(config: &Config) -> Result<(), ConfigError> {
    if config.runtime.worker_threads > 1024 {
        return Err(ConfigError::new(
            "runtime.worker_threads",
            "must be at most 1024",
        ));
    }
    if config.listeners.is_empty() {
        return Err(ConfigError::new(
            "listeners",
            "at least one listener is required",
        ));
    }
    Ok(())
}

pub(crate) fn validate_cluster(
    c: &crate::config::ClusterConfig,
    path: &str,
) -> Result<(), ConfigError> {
    if c.stream_idle_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::join_path(path, "stream_idle_timeout"),
            "must be greater than zero",
        ));
    }
    if c.connect_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::join_path(path, "connect_timeout"),
            "must be greater than zero",
        ));
    }
    if c.pool.max_connections == 0 {
        return Err(ConfigError::new(
            crate::config::join_path(path, "pool.max_connections"),
            "must be at least 1",
        ));
    }
    if c.pool.max_idle > 1_000_000 {
        return Err(ConfigError::new(
            crate::config::join_path(path, "pool.max_idle"),
            "must be at most 1000000",
        ));
    }
    if c.pool.idle_timeout.is_zero() {
        return Err(ConfigError::new(
            crate::config::join_path(path, "pool.idle_timeout"),
            "must be greater than zero",
        ));
    }
    let mut seen = HashSet::new();
    for (j, e) in c.endpoints.iter().enumerate() {
        if !seen.insert(e.address()) {
            return Err(ConfigError::new(
                crate::config::join_path(path, &format!("endpoints[{j}]")),
                format!("duplicate endpoint {}", e.address()),
            ));
        }
    }
    Ok(())
}

/// The largest `request_body_buffer`: a buffered body is held in memory until its
/// request is forwarded.
const MAX_REQUEST_BODY_BUFFER: u64 = 16 * 1024 * 1024;

/// A listener's `via` as the entry it adds, refused unless a `Via` field can carry it.
pub(super) fn listener_via(
    l: &ListenerConfig,
    path: &str,
) -> Result<Option<crate::proxy::Via>, ConfigError> {
    l.via
        .as_deref()
        .map(crate::proxy::Via::new)
        .transpose()
        .map_err(|e| ConfigError::new(format!("{path}.via"), e.to_string()))
}

pub(super) fn validate_limits(l: &ListenerConfig, path: &str) -> Result<(), ConfigError> {
    let lim = &l.limits;
    let max_headers = crate::http1::head::MAX_HEADERS as u32;
    if lim.max_headers == 0 || lim.max_headers > max_headers {
        return Err(ConfigError::new(
            format!("{path}.limits.max_headers"),
            format!("must be between 1 and {max_headers}"),
        ));
    }
    if !(1024..=1024 * 1024).contains(&lim.max_header_bytes.get()) {
        return Err(ConfigError::new(
            format!("{path}.limits.max_header_bytes"),
            "must be between 1024 and 1048576",
        ));
    }
    if lim.max_connections == 0 {
        return Err(ConfigError::new(
            format!("{path}.limits.max_connections"),
            "must be at least 1",
        ));
    }
    if lim.request_body_buffer.get() > MAX_REQUEST_BODY_BUFFER {
        return Err(ConfigError::new(
            format!("{path}.limits.request_body_buffer"),
            format!(
                "must be at most {}MiB (a buffered body is held in memory)",
                MAX_REQUEST_BODY_BUFFER >> 20
            ),
        ));
    }
    if lim.header_read_timeout.is_zero()
        || lim.idle_timeout.is_zero()
        || lim.stream_idle_timeout.is_zero()
    {
        return Err(ConfigError::new(
            format!("{path}.limits"),
            "timeouts must be greater than zero",
        ));
    }
    if lim.h2_max_concurrent_streams == 0 {
        return Err(ConfigError::new(
            format!("{path}.limits.h2_max_concurrent_streams"),
            "must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{config::Config, registry::Registry, snapshot::Snapshot};

    fn build(limits: &str) -> Result<(), String> {
        build_listener(&format!("limits: {{ {limits} }}"))
    }

    /// A listener with `key` (one `key: value` line) and no virtual hosts.
    fn build_listener(key: &str) -> Result<(), String> {
        let yaml = format!(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    {key}\n    virtual_hosts: []\n"
        );
        let config = Config::from_yaml(&yaml).map_err(|e| e.to_string())?;
        Snapshot::build(config, &Registry::default(), None)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_request_body_buffer_over_16_mib_is_refused_at_its_path() {
        assert!(build("request_body_buffer: 16MiB").is_ok());
        assert!(build("request_body_buffer: 0").is_ok());
        let err = build("request_body_buffer: 17MiB").unwrap_err();
        assert!(
            err.starts_with("listeners[0].limits.request_body_buffer: must be at most 16MiB"),
            "{err}"
        );
    }

    #[test]
    fn a_via_that_is_not_a_token_is_refused_at_its_path() {
        assert!(build_listener("via: edge-1").is_ok());
        let err = build_listener("via: \"edge 1\"").unwrap_err();
        assert!(
            err.starts_with("listeners[0].via: \"edge 1\" is not a pseudonym"),
            "{err}"
        );
    }
}
