//! The measured signals: request latency (a lock-free histogram the request path adds
//! to, drained by the control loop into a sliding window), process CPU use (sampled
//! from `/proc/self/stat`) and in-flight requests (kept by the gate).

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

/// Sub-buckets per power of two (2^3 = 8: about 9% relative width).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Largest recorded value, microseconds (2^31 µs, about 36 minutes).
const MAX_MICROS: u64 = (1 << 31) - 1;
/// Number of buckets covering `0..=MAX_MICROS`.
pub(crate) const BUCKETS: usize = bucket_of(MAX_MICROS) + 1;

/// The bucket of a value in microseconds: exact below 8 µs, then 8 log-linear
/// sub-buckets per power of two.
const fn bucket_of(micros: u64) -> usize {
    let v = if micros > MAX_MICROS {
        MAX_MICROS
    } else {
        micros
    };
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let mantissa = v >> shift; // in [SUB, 2 * SUB)
    ((shift as u64 + 1) * SUB + (mantissa - SUB)) as usize
}

/// The upper bound (exclusive) of a bucket, microseconds.
fn bucket_upper(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB {
        return i + 1;
    }
    let shift = i / SUB - 1;
    let mantissa = i % SUB + SUB;
    (mantissa + 1) << shift
}

/// A lock-free latency histogram: one relaxed atomic add per observation.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    /// Counts one request latency.
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(bucket_of(micros)) {
            b.fetch_add(1, Relaxed);
        }
    }

    /// Moves the counts since the last drain into `into` (no observation is lost: each
    /// bucket is swapped to zero atomically).
    pub(crate) fn drain(&self, into: &mut Counts) {
        for (b, c) in self.buckets.iter().zip(into.0.iter_mut()) {
            *c += b.swap(0, Relaxed);
        }
    }
}

/// Counts per bucket of one interval.
#[derive(Clone, Debug)]
pub(crate) struct Counts(Box<[u64]>);

impl Default for Counts {
    fn default() -> Self {
        Self(vec![0; BUCKETS].into_boxed_slice())
    }
}

impl Counts {
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0.iter_mut().for_each(|c| *c = 0);
    }

    /// The mean, from bucket midpoints (within ~6%); `None` without observations.
    pub(crate) fn mean(&self) -> Option<Duration> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let mut sum = 0.0;
        for (b, &k) in self.0.iter().enumerate() {
            if k > 0 {
                let hi = bucket_upper(b);
                let lo = if b == 0 { 0 } else { bucket_upper(b - 1) };
                #[allow(clippy::cast_precision_loss)]
                {
                    sum += k as f64 * (lo + hi) as f64 / 2.0;
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        Some(Duration::from_secs_f64(sum / n as f64 / 1e6))
    }

    /// The `quantile` (0..1), the upper bound of its bucket; `None` without observations.
    pub(crate) fn quantile(&self, quantile: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, &k) in self.0.iter().enumerate() {
            seen += k;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper(b)));
            }
        }
        None
    }
}

/// The control loop's view of recent latencies: one [`Counts`] per interval, newest
/// first, up to the window length.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    intervals: VecDeque<Counts>,
    capacity: usize,
}

impl LatencyWindow {
    /// A window of `capacity` intervals (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            intervals: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Drains `histogram` into a new newest interval, dropping the oldest if full.
    /// Returns the number of observations of the new interval.
    pub(crate) fn push_from(&mut self, histogram: &LatencyHistogram) -> u64 {
        let mut counts = if self.intervals.len() >= self.capacity {
            self.intervals.pop_back().unwrap_or_default()
        } else {
            Counts::default()
        };
        counts.clear();
        histogram.drain(&mut counts);
        let n = counts.total();
        self.intervals.push_front(counts);
        n
    }

    /// Observations in the newest `n` intervals.
    pub(crate) fn recent_count(&self, n: usize) -> u64 {
        self.intervals.iter().take(n).map(Counts::total).sum()
    }

    /// The mean of the newest interval, from bucket midpoints (within ~6%); `None` if
    /// it has no observations.
    pub(crate) fn newest_mean(&self) -> Option<Duration> {
        self.intervals.front()?.mean()
    }

    /// The `quantile` (0..1) over the newest intervals that together hold at least
    /// `min_samples` observations; `None` if the whole window holds fewer. The value is
    /// the upper bound of its bucket (a slight overestimate, never an underestimate).
    pub(crate) fn quantile(&self, quantile: f64, min_samples: u64) -> Option<Duration> {
        let mut used = 0;
        let mut total = 0;
        for c in &self.intervals {
            used += 1;
            total += c.total();
            if total >= min_samples.max(1) {
                break;
            }
        }
        if total < min_samples.max(1) {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for b in 0..BUCKETS {
            seen += self
                .intervals
                .iter()
                .take(used)
                .map(|c| c.0.get(b).copied().unwrap_or(0))
                .sum::<u64>();
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper(b)));
            }
        }
        None
    }
}

/// Process CPU use as a fraction of the cores available to the process, from the
/// `utime + stime` ticks of `/proc/self/stat` (all threads). Linux only: elsewhere, or
/// if the file cannot be read, every sample is `None`.
#[derive(Debug)]
pub(crate) struct CpuSampler {
    last: Option<(Instant, u64)>,
    cores: f64,
}

/// Kernel clock ticks per second in `/proc` (`USER_HZ`), fixed at 100 by the Linux ABI
/// on the architectures this runs on.
const USER_HZ: f64 = 100.0;

impl Default for CpuSampler {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        #[allow(clippy::cast_precision_loss)]
        Self {
            last: None,
            cores: cores as f64,
        }
    }
}

impl CpuSampler {
    /// CPU use since the previous call (`None` on the first call or without `/proc`).
    pub(crate) fn sample(&mut self) -> Option<f64> {
        let now = Instant::now();
        let ticks = read_cpu_ticks()?;
        let prev = self.last.replace((now, ticks));
        let (then, prev_ticks) = prev?;
        let secs = now.duration_since(then).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let used = ticks.saturating_sub(prev_ticks) as f64 / USER_HZ;
        Some((used / secs / self.cores).max(0.0))
    }
}

fn read_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat)
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses, so fields are counted after the
/// last `)`: field 3 is the first after it, utime is field 14, stime field 15.
pub(crate) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut prev = 0;
        for v in (0..100_000u64).chain([MAX_MICROS, MAX_MICROS + 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= prev && b < BUCKETS, "{v} -> {b}");
            assert!(v.min(MAX_MICROS) < bucket_upper(b), "{v} -> {b}");
            prev = b;
        }
        // Relative width at most 1/8 above 8 µs.
        for b in 9..BUCKETS {
            let (lo, hi) = (bucket_upper(b - 1), bucket_upper(b));
            assert!((hi - lo) * 8 <= lo, "{b}: {lo}..{hi}");
        }
    }

    #[test]
    fn quantile_over_newest_intervals() {
        let h = LatencyHistogram::default();
        let mut w = LatencyWindow::new(3);
        for _ in 0..100 {
            h.record(Duration::from_millis(100));
        }
        w.push_from(&h);
        for _ in 0..99 {
            h.record(Duration::from_millis(1));
        }
        h.record(Duration::from_millis(20));
        assert_eq!(w.push_from(&h), 100);
        let mean = w.newest_mean().unwrap().as_secs_f64();
        assert!((0.00115..0.00125).contains(&mean), "{mean}");
        // The newest interval alone has enough samples: the old 100 ms ones are ignored.
        let p99 = w.quantile(0.99, 50).unwrap();
        assert!(p99 >= Duration::from_micros(1000) && p99 <= Duration::from_micros(1125));
        let max = w.quantile(1.0, 50).unwrap();
        assert!(max >= Duration::from_millis(20) && max <= Duration::from_micros(22_600));
        // Asking for more samples reaches back into the older interval.
        let p99 = w.quantile(0.99, 150).unwrap();
        assert!(p99 >= Duration::from_millis(100));
        assert_eq!(w.quantile(0.5, 1000), None);
        // The window keeps 3 intervals.
        for _ in 0..3 {
            w.push_from(&h);
        }
        assert_eq!(w.quantile(0.5, 1), None);
    }

    #[test]
    fn parses_proc_stat() {
        let line =
            "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_cpu_ticks(line), Some(287));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn cpu_sampler_reads_this_process() {
        let mut s = CpuSampler::default();
        let first = s.sample();
        assert_eq!(first, None);
        if cfg!(target_os = "linux") {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let cpu = s.sample().unwrap();
            assert!((0.0..=1.5).contains(&cpu), "{cpu}");
        }
    }
}
