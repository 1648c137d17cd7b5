//! Fixed windows aligned to wall-clock time, and the Redis key of a window.

use std::io::Write as _;

use crate::local_rate_limit::{KeySource, KeyValue};

/// One fixed window: `[start, end)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Start, Unix milliseconds (a multiple of the window length).
    pub(crate) start_ms: u64,
    /// End (exclusive), Unix milliseconds.
    pub(crate) end_ms: u64,
}

impl Window {
    /// The window of `window_secs` seconds holding the instant `now_ms`.
    pub(crate) fn at(now_ms: u64, window_secs: u64) -> Self {
        let len = window_secs.saturating_mul(1000).max(1);
        let start_ms = now_ms - now_ms % len;
        Self {
            start_ms,
            end_ms: start_ms.saturating_add(len),
        }
    }

    /// Whole seconds from `now_ms` until this window ends, at least 1 (the value of
    /// `x-ratelimit-reset` and `retry-after`).
    pub(crate) fn reset_secs(&self, now_ms: u64) -> u64 {
        self.end_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }

    /// How long the window's counter must outlive `now_ms`: until the window ends,
    /// plus a second for gateways whose clocks run slightly behind.
    pub(crate) fn ttl_ms(&self, now_ms: u64) -> u64 {
        self.end_ms.saturating_sub(now_ms) + 1000
    }
}

/// The Redis key of `value` (found by `source`) in `window`:
/// `<prefix>:<source>:<value>:<window start, Unix seconds>`; `<source>:<value>` is
/// `all` when the filter has no key. The window start is the last field and the
/// source names contain no `:`, so two different counters never share a key.
pub(crate) fn redis_key(
    prefix: &str,
    key: Option<(&KeySource, KeyValue<'_>)>,
    window: Window,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 64);
    out.extend_from_slice(prefix.as_bytes());
    out.push(b':');
    match key {
        None => out.extend_from_slice(b"all"),
        Some((source, value)) => {
            match source {
                KeySource::Header(h) => {
                    out.extend_from_slice(b"header=");
                    out.extend_from_slice(h.0.as_str().as_bytes());
                }
                KeySource::SourceIp => out.extend_from_slice(b"source_ip"),
                KeySource::Identity => out.extend_from_slice(b"identity"),
                KeySource::Consumer => out.extend_from_slice(b"consumer"),
            }
            out.push(b':');
            match value {
                KeyValue::Bytes(b) => out.extend_from_slice(b),
                // Writing into a Vec cannot fail.
                KeyValue::Ip(ip) => drop(write!(out, "{ip}")),
            }
        }
    }
    drop(write!(out, ":{}", window.start_ms / 1000));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let w = Window::at(61_500, 60);
        assert_eq!((w.start_ms, w.end_ms), (60_000, 120_000));
        assert_eq!(w.reset_secs(61_500), 59);
        assert_eq!(w.reset_secs(119_999), 1);
        assert_eq!(Window::at(120_000, 60).start_ms, 120_000);
        assert_eq!(w.ttl_ms(61_500), 59_500);
    }

    proptest::proptest! {
        #[test]
        fn every_instant_is_in_its_window(now_ms in 0u64..(1 << 45), secs in 1u64..=31_622_400) {
            let w = Window::at(now_ms, secs);
            proptest::prop_assert!(w.start_ms <= now_ms && now_ms < w.end_ms);
            proptest::prop_assert_eq!(w.start_ms % (secs * 1000), 0);
            proptest::prop_assert_eq!(w.end_ms - w.start_ms, secs * 1000);
            let reset = w.reset_secs(now_ms);
            proptest::prop_assert!((1..=secs).contains(&reset));
            proptest::prop_assert!(w.ttl_ms(now_ms) > w.end_ms - now_ms);
        }
    }

    #[test]
    fn keys_name_the_source_value_and_window() {
        let w = Window::at(3_600_000, 60);
        let consumer = redis_key(
            "quota:api",
            Some((&KeySource::Consumer, KeyValue::Bytes(b"alice"))),
            w,
        );
        assert_eq!(consumer, b"quota:api:consumer:alice:3600");
        let ip = redis_key(
            "q",
            Some((&KeySource::SourceIp, KeyValue::Ip([10, 0, 0, 1].into()))),
            w,
        );
        assert_eq!(ip, b"q:source_ip:10.0.0.1:3600");
        let header = KeySource::Header("x-api-key".parse().unwrap());
        let by_header = redis_key("q", Some((&header, KeyValue::Bytes(b"k1"))), w);
        assert_eq!(by_header, b"q:header=x-api-key:k1:3600");
        assert_eq!(redis_key("q", None, w), b"q:all:3600");
    }
}
