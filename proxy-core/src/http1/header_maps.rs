//! Header maps recycled per worker thread.
//!
//! Every proxied HTTP/1.1 exchange builds two header maps (the request's and the
//! response's), and a fresh map costs two allocations (its index table and its
//! entries) and two frees. Once a head has gone out, its map is cleared and kept on a
//! small per-thread stack, as [`crate::bufs`] keeps I/O buffers, so that the next head
//! parsed on that worker reuses its memory.

use std::cell::RefCell;

use http::HeaderMap;

/// Maps a worker keeps: enough for the request maps that come back together when
/// a burst of answers is written (each a few hundred bytes to a few KiB). Kept maps
/// were all in use at once just before, so keeping them does not raise the peak.
const KEEP: usize = 256;

/// Maps that grew past this many headers are freed rather than kept, so that one
/// unusual head does not pin its memory.
const MAX_KEPT_CAPACITY: usize = 64;

/// Maps with room for fewer headers than this are freed rather than kept: the
/// usual head needs more (seven or more headers take a map with room for 12), so a
/// smaller one taken again would be reallocated whole, and keeping it would only
/// add its clearing to that. An HTTP/2 client's request map (`h2` builds it from
/// empty, room for 6 headers at first) is one.
const MIN_KEPT_CAPACITY: usize = 12;

thread_local! {
    static FREE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `capacity` headers: a kept one when the
/// worker has one.
pub(crate) fn take(capacity: usize) -> HeaderMap {
    let kept = FREE.try_with(|f| f.borrow_mut().pop()).ok().flatten();
    match kept {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Takes `map` (leaving an empty one, which holds no memory) and keeps it, cleared,
/// for a later [`take`].
pub(crate) fn give_back(map: &mut HeaderMap) {
    let capacity = map.capacity();
    if !(MIN_KEPT_CAPACITY..=MAX_KEPT_CAPACITY).contains(&capacity) {
        return;
    }
    let mut map = std::mem::take(map);
    map.clear();
    let _ = FREE.try_with(|f| {
        let mut free = f.borrow_mut();
        if free.len() < KEEP {
            free.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_given_back_is_taken_again_empty() {
        let mut map = take(8);
        map.insert(http::header::HOST, http::HeaderValue::from_static("a"));
        give_back(&mut map);
        assert!(map.is_empty());
        assert_eq!(map.capacity(), 0);
        let again = take(4);
        assert!(again.is_empty());
        assert!(again.capacity() >= 8);
    }

    #[test]
    fn a_map_too_small_for_the_usual_head_is_not_kept() {
        let mut map = HeaderMap::new();
        map.insert(http::header::HOST, http::HeaderValue::from_static("a"));
        assert!(map.capacity() < MIN_KEPT_CAPACITY);
        give_back(&mut map);
        assert_eq!(map.len(), 1);
        assert!(HeaderMap::<http::HeaderValue>::with_capacity(7).capacity() >= MIN_KEPT_CAPACITY);
    }

    #[test]
    fn a_large_map_is_not_kept() {
        let mut map = HeaderMap::with_capacity(MAX_KEPT_CAPACITY * 2);
        map.insert(http::header::HOST, http::HeaderValue::from_static("a"));
        give_back(&mut map);
        // Left as it was: freed with its owner, not kept.
        assert_eq!(map.len(), 1);
    }
}
