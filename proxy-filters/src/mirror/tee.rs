//! Copying a request for the shadow: a buffered body by reference, a streamed body
//! teed up to the cap as the real upstream reads it.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http_body::{Body as _, Frame, SizeHint};
use proxy_core::{Body, BoxError, HttpRequest};

use super::Slot;

/// Arranges for a copy of `req` to be sent through `slot`; returns the request to
/// forward (its body wrapped when it streams).
pub(super) fn start(req: HttpRequest, slot: Slot) -> HttpRequest {
    let max = slot.settings().max_body as u64;
    let (parts, body) = req.into_parts();
    let head = copy_head(&parts);
    if let Some(copy) = body.try_clone() {
        if body.size_hint().lower() > max {
            slot.settings().counters.skipped_body.inc();
        } else {
            slot.send(HttpRequest::from_parts(head, copy));
        }
        return HttpRequest::from_parts(parts, body);
    }
    if body.size_hint().lower() > max {
        slot.settings().counters.skipped_body.inc();
        return HttpRequest::from_parts(parts, body);
    }
    if body.is_end_stream() {
        slot.send(HttpRequest::from_parts(head, Body::empty()));
        return HttpRequest::from_parts(parts, body);
    }
    let tee = Tee {
        inner: body,
        buf: BytesMut::new(),
        job: Some((head, slot)),
    };
    HttpRequest::from_parts(parts, Body::new(tee))
}

fn copy_head(parts: &Parts) -> Parts {
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    head
}

/// The real body, passed through unchanged, with a bounded copy on the side.
struct Tee {
    inner: Body,
    buf: BytesMut,
    job: Option<(Parts, Slot)>,
}

impl Tee {
    fn finish(&mut self) {
        if let Some((head, slot)) = self.job.take() {
            let body = Body::from(std::mem::take(&mut self.buf).freeze());
            slot.send(HttpRequest::from_parts(head, body));
        }
    }

    fn abandon(&mut self, too_large: bool) {
        if let Some((_, slot)) = self.job.take() {
            let c = &slot.settings().counters;
            if too_large {
                c.skipped_body.inc();
            } else {
                c.skipped_incomplete.inc();
            }
        }
        self.buf = BytesMut::new();
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.abandon(false);
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(d), Some((_, slot))) = (f.data_ref(), this.job.as_ref()) {
                    if this.buf.len() + d.len() > slot.settings().max_body {
                        this.abandon(true);
                    } else {
                        // A copy, not a reference: a slice would pin the whole
                        // read buffer it came from.
                        this.buf.extend_from_slice(d);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) => this.abandon(false),
            None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
