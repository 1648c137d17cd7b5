//! The `redis_quota` section and its validation.

use std::{
    num::{NonZeroU64, NonZeroUsize},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    local_rate_limit::{KeySource, LocalRateLimitConfig},
    ConfigError,
};

/// The `redis_quota` filter's section: `limit` requests per `window` per `key`,
/// counted in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisQuotaConfig {
    /// Names this filter in metrics and in the Redis keys (default: the route's name
    /// for a route's own filter, else the listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Redis server the quotas are counted in.
    pub redis: RedisConfig,
    /// Whose quota a request counts against (`consumer`, `source_ip`, `{header:
    /// x-api-key}`, `identity`); absent: one quota for every request through this
    /// filter (per route when it is a route's filter). Requests without the key (no
    /// consumer, no such header) are not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySource>,
    /// Requests admitted per key per window.
    pub limit: NonZeroU64,
    /// The window, a whole number of seconds (`1s`, `1m`, `1h`, `1day`); windows are
    /// aligned to the Unix epoch, so every gateway agrees on when one ends.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// What a request gets when Redis cannot answer in time (default `open`).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// A local limit of this gateway, checked before Redis on every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRateLimitConfig>,
    /// The first part of the Redis keys (default `quota:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Keys known over quota remembered until their window ends (default 100000);
    /// past that, over-quota keys are asked to Redis again.
    #[serde(default = "default_max_cached")]
    pub max_cached_keys: NonZeroUsize,
}

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// The password (overrides the URL's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The database number (overrides the URL's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<u16>,
    /// The longest a request waits for its count, connecting included (default
    /// 50ms); past it the request gets the `failure_mode`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The longest one connection attempt takes (default 1s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Redis calls in flight at most; more wait (within `timeout`) for a slot
    /// (default 512).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: NonZeroUsize,
}

impl RedisConfig {
    /// Redis at `url`, with the default timeouts and bound.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            db: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// What a request gets when Redis is unreachable, too slow or busy:
/// `failure_mode: open | closed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// The request goes on, held only by the `local` limit.
    #[default]
    Open,
    /// The request is answered `503` with `x-proxy-error: quota_unavailable`.
    Closed,
}

impl RedisQuotaConfig {
    /// `limit` requests per `window` per `key`, counted in the Redis of `redis`,
    /// failing open, without a local limit.
    pub fn new(
        redis: RedisConfig,
        key: Option<KeySource>,
        limit: NonZeroU64,
        window: Duration,
    ) -> Self {
        Self {
            name: None,
            redis,
            key,
            limit,
            window,
            failure_mode: FailureMode::default(),
            local: None,
            prefix: None,
            max_cached_keys: default_max_cached(),
        }
    }

    /// The window in whole seconds.
    pub(crate) fn window_secs(&self) -> Result<u64, ConfigError> {
        const MAX: u64 = 366 * 24 * 3600;
        let secs = self.window.as_secs();
        if self.window.subsec_nanos() != 0 || secs == 0 || secs > MAX {
            return Err(ConfigError::invalid(
                "window",
                format!(
                    "{:?} is not a whole number of seconds between 1s and 366days",
                    self.window
                ),
            ));
        }
        Ok(secs)
    }

    /// The connection info of `redis`, with its overrides.
    pub(crate) fn connection_info(&self) -> Result<redis::ConnectionInfo, ConfigError> {
        use redis::IntoConnectionInfo;
        let r = &self.redis;
        if !r.url.starts_with("redis://") {
            return Err(ConfigError::invalid(
                "redis.url",
                format!("{:?} is not a redis:// URL", redact(&r.url)),
            ));
        }
        let mut info = r.url.as_str().into_connection_info().map_err(|e| {
            ConfigError::invalid(
                "redis.url",
                format!("{:?} is not a valid Redis URL: {e}", redact(&r.url)),
            )
        })?;
        let mut settings = info.redis_settings().clone();
        if let Some(p) = &r.password {
            settings = settings.set_password(p);
        }
        if let Some(db) = r.db {
            settings = settings.set_db(i64::from(db));
        }
        info = info.set_redis_settings(settings);
        for (field, d) in [
            ("redis.timeout", r.timeout),
            ("redis.connect_timeout", r.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(field, "must be more than 0s"));
            }
        }
        Ok(info)
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn default_max_cached() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_timeout() -> Duration {
    Duration::from_millis(50)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_in_flight() -> NonZeroUsize {
    NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> RedisQuotaConfig {
        proxy_core::config::from_yaml(yaml).unwrap()
    }

    #[test]
    fn windows_are_whole_seconds() {
        let base = "{ redis: { url: 'redis://127.0.0.1:6379' }, limit: 10, window: ";
        assert_eq!(parse(&format!("{base}1m }}")).window_secs().unwrap(), 60);
        for bad in ["1500ms", "0s", "400days"] {
            let e = parse(&format!("{base}{bad} }}")).window_secs().unwrap_err();
            assert_eq!(e.field(), "window", "{bad}: {e}");
        }
    }

    #[test]
    fn url_errors_name_the_field_and_hide_the_password() {
        let cfg = parse("{ redis: { url: 'http://u:secret@h' }, limit: 1, window: 1s }");
        let e = cfg.connection_info().unwrap_err();
        assert_eq!(e.field(), "redis.url");
        assert!(!e.to_string().contains("secret"), "{e}");
        let cfg = parse(
            "{ redis: { url: 'redis://127.0.0.1:7000/2', password: pw, db: 3 }, limit: 1, window: 1s }",
        );
        let info = cfg.connection_info().unwrap();
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(cfg.failure_mode, FailureMode::Open);
    }
}
