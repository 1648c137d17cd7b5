//! The Redis side: one multiplexed connection per filter (redis's
//! `ConnectionManager`, which reconnects with exponential back-off), a bound on the
//! calls in flight, a deadline per call, and the counting script.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Semaphore;

use super::metrics::RedisQuotaCounters;

/// Counts one request in the window's counter and returns the new count. The
/// counter expires `ARGV[1]` ms after it was created, so that it outlives its window
/// (`PTTL < 0`: a counter left without expiry, e.g. by a manual `SET`, gets one).
/// Sent as `EVALSHA`, and as `EVAL` once after a `NOSCRIPT` (a restarted Redis).
const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
";

/// Why Redis gave no count.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BackendError {
    /// No answer (or no free slot, or no connection) within `redis.timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused or lost, or a server error.
    #[error("redis call failed")]
    Redis(#[source] redis::RedisError),
}

/// The connection to one Redis server.
#[derive(Debug)]
pub(crate) struct Backend {
    client: redis::Client,
    /// Made on the first call, inside the runtime (making it spawns a task).
    connection: OnceLock<ConnectionManager>,
    connect_timeout: Duration,
    timeout: Duration,
    slots: Semaphore,
    script: redis::Script,
}

impl Backend {
    pub(crate) fn new(
        info: redis::ConnectionInfo,
        timeout: Duration,
        connect_timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(info)?,
            connection: OnceLock::new(),
            connect_timeout,
            timeout,
            slots: Semaphore::new(max_in_flight),
            script: redis::Script::new(INCR_SCRIPT),
        })
    }

    /// The connection, made lazily: the first call connects, a lost connection is
    /// replaced in the background (up to 3 attempts 50ms to 1s apart, then again on
    /// the next call), and calls meanwhile wait for it within their deadline.
    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(c) = self.connection.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        // Two first calls may both make one; the loser's is dropped unused.
        Ok(self.connection.get_or_init(|| made).clone())
    }

    /// Connects and loads the counting script ahead of the first request, so that it
    /// does not pay for either; failures are left to the requests' own calls.
    pub(crate) async fn warm_up(&self) {
        let load = async {
            let mut con = self.connection()?;
            self.script.load_async(&mut con).await
        };
        match tokio::time::timeout(self.connect_timeout, load).await {
            Ok(Ok(_sha)) => tracing::debug!("redis quota connection ready"),
            Ok(Err(err)) => tracing::debug!(%err, "redis quota warm-up failed"),
            Err(_elapsed) => tracing::debug!("redis quota warm-up timed out"),
        }
    }

    /// Adds one to `key`, which expires `ttl_ms` after its first count; the new count.
    pub(crate) async fn incr(
        &self,
        key: &[u8],
        ttl_ms: u64,
        counters: &RedisQuotaCounters,
    ) -> Result<u64, BackendError> {
        let started = Instant::now();
        let call = async {
            let _slot = self.slots.acquire().await;
            let mut con = self.connection()?;
            self.script
                .key(key)
                .arg(ttl_ms)
                .invoke_async::<u64>(&mut con)
                .await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(n)) => {
                counters.redis_latency.observe(started.elapsed());
                Ok(n)
            }
            Ok(Err(e)) if e.is_timeout() => {
                counters.redis_timeouts.inc();
                Err(BackendError::Timeout(self.timeout))
            }
            Ok(Err(e)) => {
                counters.redis_errors.inc();
                Err(BackendError::Redis(e))
            }
            Err(_elapsed) => {
                counters.redis_timeouts.inc();
                Err(BackendError::Timeout(self.timeout))
            }
        }
    }
}
