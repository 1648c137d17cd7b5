//! I/O buffers lent to connections only while they move bytes.
//!
//! An HTTP/1.1 connection needs a read buffer while a head arrives and a write buffer
//! while an answer goes out; between requests (keep-alive, waiting on the upstream,
//! sitting in the idle pool) it needs neither. Connections wait for their socket to
//! become readable before they take a read buffer and give every buffer back once it
//! is empty, so memory follows the bytes in flight rather than the connection count,
//! as nginx frees a keep-alive connection's header buffers. Each worker thread keeps a
//! small stack of returned buffers, so lending one costs no allocation in steady state.

use std::cell::RefCell;

use bytes::{Buf, Bytes, BytesMut};

/// The capacity a lent buffer has at least: one read of a typical request or
/// response head and a small body.
pub(crate) const SIZE: usize = 8 * 1024;

/// Free space below which a buffer is grown before the next read.
const MIN_SPARE: usize = 1024;

/// Returned buffers a worker keeps: enough for the connections that move bytes at
/// one time on one thread (a worker runs one task at a time, and a task gives its
/// buffers back before it waits), small next to what idle connections no longer
/// hold.
const KEEP: usize = 16;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Makes sure `buf` has room for a read: lends it a buffer when it has none, grows it
/// when it is nearly full.
#[inline]
pub(crate) fn ready_for_read(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = lend();
    } else if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(SIZE);
    }
}

/// Makes sure an empty `buf` holds a lent buffer before bytes are written into it.
#[inline]
pub(crate) fn ready_for_write(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = lend();
    }
}

/// Gives `buf` back to the worker's stack when it is empty (and keeps it otherwise:
/// it still holds bytes someone will read). A buffer whose memory is still shared
/// with bytes split off it (a body on its way) is let go instead: its memory is freed
/// with those bytes, and the stack holds only buffers ready to lend as they are.
#[inline]
pub(crate) fn give_back(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        let mut b = std::mem::take(buf);
        if !b.try_reclaim(SIZE) {
            return;
        }
        FREE.with(|f| {
            let mut free = f.borrow_mut();
            if free.len() < KEEP {
                free.push(b);
            }
        });
    }
}

/// Bodies up to this size are copied out of the read buffer rather than split off it.
const COPY_MAX: usize = 16 * 1024;

/// The size of a worker's slab for small copies (see [`copy_out`]).
const SLAB_SIZE: usize = 8 * 1024;

/// Copies up to this size are cut from the worker's slab; larger ones get their own
/// allocation.
const SLAB_PIECE_MAX: usize = 2 * 1024;

thread_local! {
    static REQUESTS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    static RESPONSES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Which of a worker's slabs a copy is cut from: pieces that live about as long share
/// one, so that a slab is not kept by one long-lived piece among short-lived ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slab {
    /// Request heads and bodies, kept until the upstream has answered.
    Requests,
    /// Response heads and bodies, kept until written to the client.
    Responses,
    /// Not a slab: a copy with memory of its own, for a head whose values may be kept
    /// long (see [`Slab::for_answer_head`]).
    Own,
}

impl Slab {
    /// Where the head of an answer to a request of `version` is copied. An HTTP/1.x
    /// client's answer head is written out at once: the worker's slab. An HTTP/2 or
    /// HTTP/3 client's goes through a header encoder whose table keeps the values it
    /// indexes for the connection's life, where a slice of a slab would keep the whole
    /// slab alive: a copy of its own.
    pub(crate) fn for_answer_head(version: http::Version) -> Self {
        if version <= http::Version::HTTP_11 {
            Slab::Responses
        } else {
            Slab::Own
        }
    }
}

/// Copies `src` out of a read buffer. Small copies (message heads, short bodies) are
/// cut from a slab the worker shares between them, so a copy costs no allocation: the
/// slab's memory is freed, or reused in place, once every piece cut from it has been
/// dropped. A proxied exchange makes three such copies (the request head, the response
/// head and a short response body), each of which would otherwise cost an allocation
/// and, for a head whose values are slices of it, a second one for its reference count.
/// A piece alive for long (the head of a long stream) keeps its slab's memory, at
/// most [`SLAB_SIZE`], until it goes.
pub(crate) fn copy_out(src: &[u8], slab: Slab) -> Bytes {
    let key = match slab {
        Slab::Requests if src.len() <= SLAB_PIECE_MAX => &REQUESTS,
        Slab::Responses if src.len() <= SLAB_PIECE_MAX => &RESPONSES,
        _ => return Bytes::copy_from_slice(src),
    };
    key.try_with(|s| {
        let mut slab = s.borrow_mut();
        if slab.capacity() < src.len() {
            // Reuses the slab in place when no piece of it is alive, else starts a new one.
            slab.reserve(SLAB_SIZE);
        }
        slab.extend_from_slice(src);
        slab.split().freeze()
    })
    .unwrap_or_else(|_| Bytes::copy_from_slice(src))
}

/// Takes the first `n` bytes of `buf` (a body that arrived with its head; heads are
/// always copied out by the parser). Up to [`COPY_MAX`] they are copied out
/// ([`copy_out`]), so the
/// buffer stays whole and goes back to the worker while the request is served, and
/// what is in flight holds only its own bytes; more is split off, no copy.
pub(crate) fn take_front(buf: &mut BytesMut, n: usize, slab: Slab) -> Bytes {
    if n <= COPY_MAX {
        let body = copy_out(&buf[..n], slab);
        buf.advance(n);
        body
    } else {
        buf.split_to(n).freeze()
    }
}

/// Gives the values of `headers` memory of their own: one allocation holding them all,
/// instead of slices of the buffers their heads were read into (a worker's slab, a
/// client library's read buffer).
///
/// For a head handed to an HTTP/2 encoder. HPACK keeps the fields it indexes in a
/// table for as long as the connection lives (`date`, `server`, `content-type`...,
/// one entry per value seen), and a value that is a slice of a larger buffer keeps the
/// whole buffer (a slab is [`SLAB_SIZE`]) alive with it: dozens per connection. Copied,
/// an entry keeps only the bytes of its head's values. The answers this proxy parses
/// itself are copied once when parsed instead ([`Slab::for_answer_head`]).
pub(crate) fn own_header_values(headers: &mut http::HeaderMap) {
    let total: usize = headers.values().map(|v| v.len()).sum();
    if total == 0 {
        return;
    }
    let mut all = Vec::with_capacity(total);
    for v in headers.values() {
        all.extend_from_slice(v.as_bytes());
    }
    let all = Bytes::from(all);
    let mut at = 0;
    for v in headers.values_mut() {
        let len = v.len();
        // The bytes were a valid value a moment ago; the check cannot fail.
        if let Ok(mut owned) = http::HeaderValue::from_maybe_shared(all.slice(at..at + len)) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
        at += len;
    }
}

/// A buffer with at least [`SIZE`] bytes of room.
fn lend() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_lent_and_given_back() {
        let mut a = BytesMut::new();
        ready_for_read(&mut a);
        assert!(a.capacity() >= SIZE);
        a.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        // Not empty: kept.
        give_back(&mut a);
        assert!(a.capacity() >= SIZE);
        a.clear();
        give_back(&mut a);
        assert_eq!(a.capacity(), 0);
        let mut b = BytesMut::new();
        ready_for_write(&mut b);
        assert!(b.capacity() >= SIZE);
    }

    #[test]
    fn small_copies_share_a_slab_and_stay_intact() {
        let a = copy_out(b"first piece", Slab::Requests);
        let b = copy_out(b"second", Slab::Responses);
        let big = copy_out(&[7u8; SLAB_PIECE_MAX + 1], Slab::Responses);
        assert_eq!(&a[..], b"first piece");
        assert_eq!(&b[..], b"second");
        assert_eq!(big.len(), SLAB_PIECE_MAX + 1);
        // Fill several slabs while the first pieces are alive: they are not overwritten.
        let many: Vec<Bytes> = (0..64u8)
            .map(|i| copy_out(&[i; 1000], Slab::Responses))
            .collect();
        for (i, p) in many.iter().enumerate() {
            assert!(p.iter().all(|&x| usize::from(x) == i));
        }
        assert_eq!(&a[..], b"first piece");
        assert_eq!(&b[..], b"second");
    }

    #[test]
    fn a_buffer_shared_with_a_body_in_flight_is_not_overwritten() {
        let mut a = BytesMut::new();
        ready_for_read(&mut a);
        a.extend_from_slice(b"body");
        let body = a.split_to(4).freeze();
        give_back(&mut a);
        // Still shared with the body: let go, not kept.
        assert_eq!(FREE.with(|f| f.borrow().len()), 0);
        let mut b = BytesMut::new();
        ready_for_read(&mut b);
        b.extend_from_slice(b"next");
        assert_eq!(&body[..], b"body");
    }

    #[test]
    fn answer_heads_for_multiplexed_clients_get_memory_of_their_own() {
        use http::Version;
        for v in [Version::HTTP_09, Version::HTTP_10, Version::HTTP_11] {
            assert_eq!(Slab::for_answer_head(v), Slab::Responses);
        }
        for v in [Version::HTTP_2, Version::HTTP_3] {
            assert_eq!(Slab::for_answer_head(v), Slab::Own);
        }
        // Two small copies of their own are two allocations, not neighbours in a slab.
        let a = copy_out(b"HTTP/1.1 200 OK\r\n\r\n", Slab::Own);
        let b = copy_out(b"HTTP/1.1 204 No Content\r\n\r\n", Slab::Own);
        assert_eq!(&a[..], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_ne!(a.as_ptr_range().end, b.as_ptr());
    }

    #[test]
    fn owned_header_values_leave_the_slab() {
        let head = copy_out(b"text/plainnginx", Slab::Responses);
        let mut headers = http::HeaderMap::new();
        let value = |r: std::ops::Range<usize>| {
            http::HeaderValue::from_maybe_shared(head.slice(r)).unwrap()
        };
        headers.insert(http::header::CONTENT_TYPE, value(0..10));
        let mut secret = value(10..15);
        secret.set_sensitive(true);
        headers.insert(http::header::SERVER, secret);
        headers.insert(
            http::header::ACCEPT_RANGES,
            http::HeaderValue::from_static(""),
        );
        own_header_values(&mut headers);
        assert_eq!(headers[http::header::CONTENT_TYPE], "text/plain");
        assert_eq!(headers[http::header::SERVER], "nginx");
        assert!(headers[http::header::SERVER].is_sensitive());
        assert_eq!(headers[http::header::ACCEPT_RANGES], "");
        let slab = head.as_ptr_range();
        for v in headers.values() {
            assert!(
                !slab.contains(&v.as_bytes().as_ptr()),
                "{v:?} still in the slab"
            );
        }
    }
}
