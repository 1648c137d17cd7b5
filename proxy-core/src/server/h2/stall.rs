//! How long one wait on an HTTP/2 peer may last: its request body's next DATA frame,
//! or flow-control window for the answer. A stream whose peer neither sends nor
//! reads would otherwise hold its upstream connection for as long as the connection
//! answers pings.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, Sleep};

/// A clock for waits on the peer: each wait starts it afresh, and it runs out when
/// one wait lasts `limit` (the listener's `stream_idle_timeout`). The timer is made
/// on the first wait only: a stream that never waits costs nothing.
#[derive(Debug)]
pub(super) struct Stall {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl Stall {
    pub(super) fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            waiting: false,
        }
    }

    /// The peer made progress: the next wait gets the whole limit again.
    pub(super) fn progress(&mut self) {
        self.waiting = false;
    }

    /// The peer is waited for: ready once this wait has lasted the limit (the task
    /// is woken then).
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.limit;
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
