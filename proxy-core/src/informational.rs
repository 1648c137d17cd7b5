//! Interim (1xx) answers on their way to the client ahead of the final answer.
//!
//! A proxy forwards the 1xx answers an upstream sends before its final one (RFC 9110
//! 15.2): `103 Early Hints` lets a browser start fetching what the page will need
//! while the upstream is still at work. The connection a request came on puts an
//! [`Informational`] in its extensions; the upstream clients hand it what they
//! receive, and any layer may send its own.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use http::{Response, StatusCode};

/// How many interim answers may wait for the client's connection at once; more are
/// not sent (an upstream that floods them takes no more memory).
const WAITING_AT_MOST: usize = 8;

/// Where a request's interim (1xx) answers go: to its client, ahead of the final
/// answer, as they are sent. Found in the request's extensions when its connection
/// takes interim answers (HTTP/1.1 and HTTP/2 clients; not HTTP/1.0 ones, RFC 9110
/// 15.2). A clone sends to the same client.
///
/// ```
/// use proxy_core::informational::Informational;
///
/// /// In a layer: a `103 Early Hints` before the upstream is asked.
/// fn early_hints<B>(req: &http::Request<B>) {
///     if let Some(to_client) = req.extensions().get::<Informational>() {
///         let hints = http::Response::builder()
///             .status(http::StatusCode::EARLY_HINTS)
///             .header(http::header::LINK, "</app.css>; rel=preload; as=style")
///             .body(())
///             .unwrap();
///         // Not sent only if the client is gone or too many are waiting.
///         let _ = to_client.send(hints);
///     }
/// }
/// # early_hints(&http::Request::new(()));
/// ```
#[derive(Clone)]
pub struct Informational {
    shared: Arc<Shared>,
    /// The request it belongs to on its connection: an answer sent for an earlier
    /// one (a handle kept past its answer) is not written before a later one's.
    request: u64,
}

/// Why an interim answer was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSent {
    /// Its status is not an interim one: 1xx, other than `101 Switching Protocols`
    /// (a final answer: what follows it is not HTTP).
    NotInterim(StatusCode),
    /// The client's connection is gone.
    ClientGone,
    /// Eight answers already wait for the client's connection (one that floods them
    /// takes no more memory).
    TooManyWaiting,
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotInterim(status) => write!(f, "{status} is not an interim answer"),
            Self::ClientGone => f.write_str("the client's connection is gone"),
            Self::TooManyWaiting => f.write_str("too many interim answers wait to be sent"),
        }
    }
}

impl std::error::Error for NotSent {}

impl Informational {
    /// Sends `head` to the client before the final answer: written as soon as the
    /// connection's task runs (after any sent before it), with the connection's
    /// own fields (`connection` and those it names, `keep-alive`, ...) left out.
    /// What is sent once the request has its final answer is dropped.
    pub fn send(&self, head: Response<()>) -> Result<(), NotSent> {
        let status = head.status();
        if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(NotSent::NotInterim(status));
        }
        let shared = &*self.shared;
        if !shared.open.load(Ordering::Acquire) {
            return Err(NotSent::ClientGone);
        }
        {
            let mut waiting = shared.lock();
            if waiting.len() >= WAITING_AT_MOST {
                return Err(NotSent::TooManyWaiting);
            }
            waiting.push_back((self.request, head));
        }
        shared.any.store(true, Ordering::Release);
        shared.waker.wake();
        Ok(())
    }
}

impl Informational {
    /// Where a request's interim answers go: `given` with it (the connection loop's
    /// path without filters), else the handle in its `extensions`.
    pub(crate) fn given_or_in<'a>(
        given: Option<&'a Self>,
        extensions: &'a http::Extensions,
    ) -> Option<&'a Self> {
        given.or_else(|| extensions.get())
    }

    /// Hands on an upstream's interim answer, unless it is a `100 Continue`: the
    /// proxy does not pass `Expect` on, and answers it itself.
    pub(crate) fn forward_upstreams(&self, head: Response<()>) {
        if head.status() == StatusCode::CONTINUE {
            return;
        }
        if let Err(e) = self.send(head) {
            tracing::debug!(error = %e, "an upstream's interim answer not forwarded");
        }
    }
}

impl std::fmt::Debug for Informational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informational")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

struct Shared {
    waiting: Mutex<VecDeque<(u64, Response<()>)>>,
    /// Whether `waiting` may hold any: read without the lock on every poll.
    any: AtomicBool,
    /// Cleared when the connection's side is dropped.
    open: AtomicBool,
    waker: AtomicWaker,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Response<()>)>> {
        // A panic while holding it left a whole queue: still usable.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The connection's side: made once per HTTP/1.1 connection (its requests come one
/// at a time) or per HTTP/2 stream, polled while the request's answer is awaited.
pub(crate) struct InterimAnswers {
    shared: Arc<Shared>,
    request: u64,
}

impl InterimAnswers {
    pub(crate) fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                waiting: Mutex::new(VecDeque::new()),
                any: AtomicBool::new(false),
                open: AtomicBool::new(true),
                waker: AtomicWaker::new(),
            }),
            request: 0,
        }
    }

    /// The handle for the connection's next request; what an earlier request's
    /// handle sends from now on is dropped.
    pub(crate) fn next_request(&mut self) -> Informational {
        self.request += 1;
        Informational {
            shared: self.shared.clone(),
            request: self.request,
        }
    }

    /// Whether an interim answer may be waiting (one of an earlier request's, which
    /// [`Self::poll_next`] drops, included).
    pub(crate) fn may_have_waiting(&self) -> bool {
        self.shared.any.load(Ordering::Acquire)
    }

    /// The next interim answer for the current request, if one is waiting; the
    /// caller is woken when one comes.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Response<()>> {
        let shared = &*self.shared;
        shared.waker.register(cx.waker());
        while shared.any.load(Ordering::Acquire) {
            let next = {
                let mut waiting = shared.lock();
                let next = waiting.pop_front();
                if waiting.is_empty() {
                    shared.any.store(false, Ordering::Release);
                }
                next
            };
            match next {
                Some((request, head)) if request == self.request => {
                    return Poll::Ready(without_connection_fields(head));
                }
                // An earlier request's: its answer has gone.
                Some(_) => continue,
                None => break,
            }
        }
        Poll::Pending
    }
}

impl Drop for InterimAnswers {
    fn drop(&mut self) {
        self.shared.open.store(false, Ordering::Release);
    }
}

/// `head` without the fields that describe the connection it came on, nor framing
/// fields (an interim answer has no content, RFC 9110 15.2).
fn without_connection_fields(mut head: Response<()>) -> Response<()> {
    let headers = head.headers_mut();
    crate::proxy::strip_hop_by_hop(headers, false);
    crate::h2_body::strip_connection_fields(headers);
    headers.remove(http::header::CONTENT_LENGTH);
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn head(status: u16) -> Response<()> {
        Response::builder()
            .status(status)
            .header("link", "</a.css>; rel=preload")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("content-length", "0")
            .body(())
            .unwrap()
    }

    fn next(answers: &mut InterimAnswers) -> Option<Response<()>> {
        let mut cx = Context::from_waker(Waker::noop());
        match answers.poll_next(&mut cx) {
            Poll::Ready(head) => Some(head),
            Poll::Pending => None,
        }
    }

    #[test]
    fn an_interim_answer_arrives_in_order_without_the_connection_fields() {
        let mut answers = InterimAnswers::new();
        let to_client = answers.next_request();
        to_client.send(head(103)).unwrap();
        to_client.send(head(102)).unwrap();
        let first = next(&mut answers).unwrap();
        assert_eq!(first.status(), 103);
        assert_eq!(first.headers()["link"], "</a.css>; rel=preload");
        assert!(first.headers().get("connection").is_none());
        assert!(first.headers().get("x-hop").is_none());
        assert!(first.headers().get("content-length").is_none());
        assert_eq!(next(&mut answers).unwrap().status(), 102);
        assert!(next(&mut answers).is_none());
    }

    #[test]
    fn final_and_switching_answers_are_not_interim() {
        let mut answers = InterimAnswers::new();
        let to_client = answers.next_request();
        assert_eq!(
            to_client.send(head(200)),
            Err(NotSent::NotInterim(StatusCode::OK))
        );
        assert_eq!(
            to_client.send(head(101)),
            Err(NotSent::NotInterim(StatusCode::SWITCHING_PROTOCOLS))
        );
        assert!(next(&mut answers).is_none());
    }

    #[test]
    fn an_earlier_requests_answer_is_dropped() {
        let mut answers = InterimAnswers::new();
        let stale = answers.next_request();
        let current = answers.next_request();
        stale.send(head(103)).unwrap();
        current.send(head(104)).unwrap();
        assert_eq!(next(&mut answers).unwrap().status(), 104);
        assert!(next(&mut answers).is_none());
    }

    #[test]
    fn a_flood_is_bounded_and_a_gone_client_takes_none() {
        let mut answers = InterimAnswers::new();
        let to_client = answers.next_request();
        for _ in 0..WAITING_AT_MOST {
            to_client.send(head(103)).unwrap();
        }
        assert_eq!(to_client.send(head(103)), Err(NotSent::TooManyWaiting));
        drop(answers);
        assert_eq!(to_client.send(head(103)), Err(NotSent::ClientGone));
    }
}
