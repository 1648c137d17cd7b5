//! The scheduling priority of a software offload engine's threads.

use serde::{Deserialize, Serialize};

/// How the threads of a software offload engine are scheduled (Linux), set by each
/// thread on itself when it starts.
///
/// The default is [`ThreadPriority::Nice`] 19, the lowest ordinary priority. A
/// software engine signs on the same cores as the proxy's I/O threads: at the same
/// priority, a request that arrives on an open connection while a 0.5 ms RSA
/// signature runs on its core waits for the scheduler to switch, and a burst of new
/// handshakes then shows in the p99 of every open connection (BENCHMARKS.md, TLS
/// offload under a handshake burst, engine and I/O thread on one core: 3.4-7.1x the
/// idle p99 with the engine at the default priority, 1.02-2.22x at nice 19). At a low priority the I/O thread preempts the
/// signature as soon as it has work. The scheduler only weighs priorities when a core
/// is contended, so a signature still gets every cycle the I/O threads leave idle;
/// when they leave none, handshakes slow down (bounded by `handshake_timeout`)
/// rather than the open connections. An engine on cores of its own (a hardware card,
/// isolated CPUs) loses nothing by it either.
///
/// YAML (`offload.engines[].thread_priority`): `normal`, `idle`, `{nice: 10}`.
///
/// # Example
/// ```
/// use proxy_tls::config::ThreadPriority;
///
/// let p: ThreadPriority = proxy_core::config::from_yaml("{nice: 10}").unwrap();
/// assert_eq!(p, ThreadPriority::Nice(10));
/// let p: ThreadPriority = proxy_core::config::from_yaml("idle").unwrap();
/// assert_eq!(p, ThreadPriority::Idle);
/// assert_eq!(ThreadPriority::default(), ThreadPriority::Nice(19));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadPriority {
    /// The priority the threads inherit from the thread that starts them (normally
    /// that of the I/O threads): the signing work competes with them as an equal.
    Normal,
    /// A nice value from 1 (slightly below normal) to 19 (lowest), set per thread
    /// (`setpriority(PRIO_PROCESS, tid, n)`). The config refuses other values; in
    /// code they are clamped into 1..=19.
    Nice(i8),
    /// `SCHED_IDLE`: the threads run only when nothing else on their core wants to,
    /// and any other thread preempts them at once. The strongest isolation of the I/O
    /// threads; on a saturated core handshakes wait until it frees up.
    Idle,
}

impl Default for ThreadPriority {
    fn default() -> Self {
        Self::Nice(Self::LOWEST_NICE)
    }
}

impl ThreadPriority {
    /// The lowest priority a nice value gives (the default).
    pub const LOWEST_NICE: i8 = 19;

    /// Checks that a [`ThreadPriority::Nice`] value is 1 to 19.
    ///
    /// # Errors
    /// A message for the field's error, naming the value.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::Nice(n) if !(1..=Self::LOWEST_NICE).contains(&n) => Err(format!(
                "{n} is not a nice value from 1 to 19 (use normal for the default priority)"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proxy_core::config::{from_yaml, to_yaml};

    use super::*;

    #[test]
    fn priorities_follow_the_config_convention() {
        for (yaml, p) in [
            ("normal", ThreadPriority::Normal),
            ("idle", ThreadPriority::Idle),
            ("{nice: 15}", ThreadPriority::Nice(15)),
        ] {
            assert_eq!(from_yaml::<ThreadPriority>(yaml).unwrap(), p, "{yaml}");
            assert_eq!(
                from_yaml::<ThreadPriority>(&to_yaml(&p).unwrap()).unwrap(),
                p
            );
        }
        assert!(from_yaml::<ThreadPriority>("low").is_err());
        assert!(from_yaml::<ThreadPriority>("{nice: 300}").is_err());
        assert!(ThreadPriority::Nice(0).check().is_err());
        assert!(ThreadPriority::Nice(20).check().is_err());
        assert!(ThreadPriority::Nice(-5).check().is_err());
        assert!(ThreadPriority::Nice(1).check().is_ok());
    }
}
