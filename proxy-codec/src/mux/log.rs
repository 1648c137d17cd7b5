//! Log lines a peer can trigger at will (a frame over the limit, calls sent to a
//! draining connection), at `info` so operators see why calls fail, and rate-limited
//! process-wide so a flood of them cannot flood the log.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        OnceLock,
    },
    time::Instant,
};

use crate::metrics::TooLarge;

/// At most `per_second` lines a second for one kind of event, shared by every
/// connection and thread.
pub(crate) struct LogBudget {
    per_second: u64,
    /// The second (since the process's first use) in the high bits, the lines
    /// logged in it in the low 16.
    slot: AtomicU64,
}

impl LogBudget {
    pub(crate) const fn new(per_second: u64) -> Self {
        Self {
            per_second,
            slot: AtomicU64::new(0),
        }
    }

    /// Whether one more line fits this second's budget (taking it if so).
    pub(crate) fn allow(&self) -> bool {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        // Second 0 would match a fresh slot's; start at 1.
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_secs() + 1;
        let cur = self.slot.load(Relaxed);
        let (second, count) = (cur >> 16, cur & 0xffff);
        let next = if second == now {
            if count >= self.per_second {
                return false;
            }
            cur + 1
        } else {
            (now << 16) | 1
        };
        // A lost race drops the line: the budget is a ceiling, not a quota.
        self.slot
            .compare_exchange(cur, next, Relaxed, Relaxed)
            .is_ok()
    }
}

/// Lines about messages over `max_frame_bytes`, all kinds together.
static TOO_LARGE: LogBudget = LogBudget::new(10);

/// Lines about calls a draining connection refuses.
static REFUSED: LogBudget = LogBudget::new(1);

/// Logs a message over `max_frame_bytes` that fails its call: `len` is the length
/// its header declared, or for a body the bytes seen (its known size, else what was
/// read before the limit was passed).
pub(crate) fn too_large(protocol: &'static str, kind: TooLarge, len: u64, max: usize) {
    if TOO_LARGE.allow() {
        tracing::info!(
            protocol,
            kind = kind.as_str(),
            len,
            max,
            reason = kind.reason(),
            "message over max_frame_bytes; its call fails"
        );
    }
}

/// Logs that a draining connection refuses calls, at most once a second for the
/// whole process (a drain may refuse many calls on many connections at once).
pub(crate) fn refused(protocol: &'static str, refused_here: u64) {
    if REFUSED.allow() {
        tracing::info!(
            protocol,
            refused_here,
            reason = "server_closing",
            "draining: calls refused with the protocol's server-closing error"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::LogBudget;

    #[test]
    fn a_budget_allows_its_lines_per_second_then_none() {
        let budget = LogBudget::new(10);
        let allowed = (0..100).filter(|_| budget.allow()).count();
        // All within one second, or straddling two.
        assert!((10..=20).contains(&allowed), "{allowed} lines allowed");
    }
}
