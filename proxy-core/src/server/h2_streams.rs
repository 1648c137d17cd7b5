//! The streams of one downstream HTTP/2 connection, run inside the connection's own
//! task rather than as a task each.
//!
//! hyper hands every accepted stream to an executor. Spawned as tasks (the usual
//! choice), each stream costs a task allocation, a place in the runtime's task list
//! and, for each answer, a wake-up of the stream's task and then of the connection's
//! (which writes the frames). Kept in a set that the connection's task polls, a
//! stream's answer is written by the same poll that produced it: one task per
//! connection, as an event loop would run it.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures_util::stream::{FuturesUnordered, StreamExt};

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor hyper is given: it collects the streams the connection starts.
#[derive(Clone, Default)]
pub(super) struct StreamSet {
    started: Arc<Mutex<Vec<StreamFuture>>>,
}

impl<F> hyper::rt::Executor<F> for StreamSet
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        lock(&self.started).push(Box::pin(fut));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pin_project_lite::pin_project! {
    /// A connection future driven together with its streams: completes when the
    /// connection does (streams left then have nothing to write to).
    pub(super) struct WithStreams<C> {
        #[pin]
        conn: C,
        set: StreamSet,
        running: FuturesUnordered<StreamFuture>,
        // Answers are waiting to be written, and the task has let the other ready
        // tasks run once so that more answers join the same write.
        deferred: bool,
    }
}

impl<C> WithStreams<C> {
    pub(super) fn new(conn: C, set: StreamSet) -> Self {
        Self {
            conn,
            set,
            running: FuturesUnordered::new(),
            deferred: false,
        }
    }

    /// The connection itself (to start its graceful shutdown).
    pub(super) fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        loop {
            // Streams first: what they answer, the connection writes below.
            let mut answered = false;
            while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {
                answered = true;
            }
            // The first answers of a round wait for one turn of the runtime, as a
            // spawned stream's would, so the answers of the streams the same events
            // woke leave in one write rather than one write each.
            if answered && !*this.deferred {
                *this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            *this.deferred = false;
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            let started = std::mem::take(&mut *lock(&this.set.started));
            if started.is_empty() {
                return Poll::Pending;
            }
            this.running.extend(started);
        }
    }
}
