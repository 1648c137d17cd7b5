//! The drain signal as a connection loop waits on it, once per request.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use tokio::sync::watch;

pin_project_lite::pin_project! {
    /// `wait`, the future that ends when the drain flag is set, polled only when a
    /// poll could change something: the first time, when the flag was written since,
    /// or from another task. A connection loop polls its drain signal every time it
    /// waits for a request, and a watch subscription's poll takes the channel's lock;
    /// this looks at the flag's version instead, one atomic load.
    pub(super) struct DrainSignal<F> {
        flag: watch::Receiver<bool>,
        // The task `wait` last registered, and so wakes when the flag is written.
        registered: Option<Waker>,
        #[pin]
        wait: F,
    }
}

impl<F> DrainSignal<F> {
    /// `wait` must end only after `flag` has been written.
    pub(super) fn new(mut flag: watch::Receiver<bool>, wait: F) -> Self {
        // Writes from before are `wait`'s to see on its first poll.
        flag.mark_unchanged();
        Self {
            flag,
            registered: None,
            wait,
        }
    }
}

impl<F: Future<Output = ()>> Future for DrainSignal<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let same_task = this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        // A closed channel counts as written: `wait` decides.
        if same_task && !this.flag.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        if !same_task {
            *this.registered = Some(cx.waker().clone());
        }
        this.wait.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One poll of `f` from the current task.
    async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }

    fn signal(rx: watch::Receiver<bool>) -> DrainSignal<impl Future<Output = ()>> {
        let mut wait_rx = rx.clone();
        DrainSignal::new(rx, async move {
            let _ = wait_rx.wait_for(|d| *d).await;
        })
    }

    #[tokio::test]
    async fn ends_when_the_flag_is_set_after_it_first_waited() {
        let (tx, rx) = watch::channel(false);
        let mut drained = Box::pin(signal(rx));
        // Registers, then sits out polls that find nothing written.
        for _ in 0..3 {
            assert!(poll_once(&mut drained).await.is_pending());
        }
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(false);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(true);
        });
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("the drain signal ends once the flag is set");
    }

    #[tokio::test]
    async fn ends_at_once_when_the_flag_was_set_before() {
        let (tx, rx) = watch::channel(false);
        let _ = tx.send(true);
        tokio::time::timeout(Duration::from_secs(5), signal(rx))
            .await
            .expect("a flag set before the first poll ends the wait");
    }

    #[tokio::test]
    async fn a_poll_from_another_task_registers_that_task() {
        let (tx, rx) = watch::channel(false);
        let mut drained = Box::pin(signal(rx));
        assert!(poll_once(&mut drained).await.is_pending());
        // Moved to another task, which must be the one woken.
        let moved = tokio::spawn(drained);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(true);
        tokio::time::timeout(Duration::from_secs(5), moved)
            .await
            .expect("the task the signal moved to is woken")
            .expect("the task ends");
    }
}
