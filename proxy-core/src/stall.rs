//! How long one wait on a peer may last: the next bytes of an HTTP/1.1 body (either
//! way), an HTTP/2 client's next DATA frame or flow-control window, an HTTP/2
//! upstream's next body frame. A stream whose peer
//! neither sends nor reads would otherwise hold what it uses (the upstream connection
//! behind it, the client's stream) for as long as the connection answers pings.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, Sleep};

/// A body whose bytes stopped arriving: none came for the stream idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no body bytes within the stream idle timeout")]
pub(crate) struct BodyStalled;

/// A clock for waits on the peer: each wait starts it afresh, and it runs out when
/// one wait lasts `limit` (a listener's or a cluster's `stream_idle_timeout`). The
/// timer is made on the first wait only: a stream that never waits costs nothing.
///
/// Sixteen bytes, so that it fits in a body without making every `Body` larger.
#[derive(Debug)]
pub(crate) struct Stall {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The limit in milliseconds (at most about 49 days).
    limit_ms: u32,
    waiting: bool,
}

impl Stall {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            sleep: None,
            limit_ms: u32::try_from(limit.as_millis()).unwrap_or(u32::MAX),
            waiting: false,
        }
    }

    /// The peer made progress: the next wait gets the whole limit again.
    pub(crate) fn progress(&mut self) {
        self.waiting = false;
    }

    /// The peer is waited for: ready once this wait has lasted the limit (the task
    /// is woken then).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + Duration::from_millis(u64::from(self.limit_ms));
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the stall has expired, polled once.
    async fn expired(stall: &mut Stall) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(stall.poll_expired(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_the_whole_limit() {
        let mut stall = Stall::new(Duration::from_secs(10));
        assert!(!expired(&mut stall).await);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut stall).await);
        // Progress: a new wait starts its own ten seconds.
        stall.progress();
        assert!(!expired(&mut stall).await);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut stall).await);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(expired(&mut stall).await);
    }
}
