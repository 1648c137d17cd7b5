//! Upstreams that never answer: a sink that reads, a black hole that does not.

use tokio::io::AsyncReadExt;

use super::{spawn_raw, Upstream};

impl Upstream {
    /// Accepts connections and reads (counting the bytes, [`Upstream::bytes`]) until
    /// the peer closes; never answers.
    pub fn sink() -> Self {
        spawn_raw(|mut s, stats| async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
                stats.add_bytes(n as u64);
            }
        })
    }

    /// Accepts connections and holds them open without reading or answering, until
    /// the upstream stops.
    pub fn blackhole() -> Self {
        spawn_raw(|s, _| async move {
            let _held = s;
            std::future::pending::<()>().await;
        })
    }
}
