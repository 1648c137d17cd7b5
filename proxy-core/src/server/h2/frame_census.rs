//! A tally of the frames a client sends that move no request forward: PRIORITY,
//! WINDOW_UPDATE, SETTINGS, PING and frame types HTTP/2 does not know. Each costs the
//! connection's task a frame's work and the client next to nothing, so a client
//! that only sends those (a PRIORITY or WINDOW_UPDATE flood) would hold a worker
//! busy for as long as it likes. Each such frame spends one unit of a budget; each
//! stream opened (a HEADERS frame) and the bytes the proxy writes (which the
//! client's window updates follow) earn some back, and every idle period of the
//! connection renews it. A client past its budget is abusive.
//!
//! The tally reads the bytes as they come in, frame header by frame header, and
//! skips payloads unread: what `h2` decodes is not decoded twice.

/// Frame types that carry a request forward, or that `h2` bounds by itself (RFC 9113
/// 6): DATA, HEADERS, RST_STREAM, PUSH_PROMISE, GOAWAY, CONTINUATION.
const COUNTED_FREE: [u8; 6] = [0x0, 0x1, 0x3, 0x5, 0x7, 0x9];
/// HEADERS: a stream opened (or its trailers).
const HEADERS: u8 = 0x1;
/// The client connection preface, before the first frame (RFC 9113 3.4).
const PREFACE_LEN: usize = 24;
/// The frame header: length (24 bits), type, flags, stream id (RFC 9113 4.1).
const FRAME_HEADER_LEN: usize = 9;

/// A connection's budget when it opens and when an idle period renews it.
const START: i64 = 10_000;
/// The most a connection can have earned at a time.
const CAP: i64 = 100_000;
/// Earned per stream opened (Envoy's default allows 100 PRIORITY frames a stream).
const PER_STREAM: i64 = 100;
/// Bytes written to the client per unit earned: a client may send a window update
/// for every small DATA frame it gets.
const WRITTEN_BYTES_PER_UNIT: usize = 128;

/// The tally of one connection's incoming frames (see the module docs).
#[derive(Debug)]
pub(super) struct FrameCensus {
    /// Bytes to pass before the next frame header: the rest of a payload, or the
    /// preface at first.
    skip: usize,
    /// A frame header split between reads.
    head: [u8; FRAME_HEADER_LEN],
    have: usize,
    budget: i64,
}

impl FrameCensus {
    /// The tally of a connection whose first bytes are its client preface.
    pub(super) fn new() -> Self {
        Self {
            skip: PREFACE_LEN,
            head: [0; FRAME_HEADER_LEN],
            have: 0,
            budget: START,
        }
    }

    /// Tallies `bytes`, the next ones from the client. False once the client has
    /// spent more than its budget.
    pub(super) fn read(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let (len, kind) = if self.have == 0 && bytes.len() >= FRAME_HEADER_LEN {
                let head = frame_header(&bytes[..FRAME_HEADER_LEN]);
                bytes = &bytes[FRAME_HEADER_LEN..];
                head
            } else {
                let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have < FRAME_HEADER_LEN {
                    break;
                }
                self.have = 0;
                frame_header(&self.head)
            };
            self.skip = len;
            if kind == HEADERS {
                self.budget = (self.budget + PER_STREAM).min(CAP);
            } else if !COUNTED_FREE.contains(&kind) {
                self.budget -= 1;
            }
        }
        self.budget >= 0
    }

    /// Earns back for `n` bytes written to the client.
    pub(super) fn wrote(&mut self, n: usize) {
        let earned = i64::try_from(n / WRITTEN_BYTES_PER_UNIT).unwrap_or(CAP);
        self.budget = self.budget.saturating_add(earned).min(CAP);
    }

    /// A new idle period of the connection: the budget is at least its start again.
    pub(super) fn renew(&mut self) {
        self.budget = self.budget.max(START);
    }
}

/// The payload length and type of a frame header.
fn frame_header(head: &[u8]) -> (usize, u8) {
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    (len, head[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn priority() -> Vec<u8> {
        frame(0x2, &[0, 0, 0, 0, 16])
    }

    #[test]
    fn a_priority_flood_spends_the_budget() {
        let mut census = FrameCensus::new();
        assert!(census.read(PREFACE));
        // SETTINGS counts as well: with it, the flood is the whole budget.
        assert!(census.read(&frame(0x4, &[])));
        let flood: Vec<u8> = (1..START).flat_map(|_| priority()).collect();
        assert!(census.read(&flood));
        assert!(!census.read(&priority()), "one past the budget");
    }

    #[test]
    fn streams_and_written_bytes_earn_budget_back() {
        let mut census = FrameCensus::new();
        assert!(census.read(PREFACE));
        let flood: Vec<u8> = (0..START).flat_map(|_| priority()).collect();
        assert!(census.read(&flood));
        // A stream opened, with a large DATA payload that is skipped unread (its
        // bytes look like PRIORITY frames).
        let mut bytes = frame(0x1, &[0x82, 0x86, 0x84]);
        bytes.extend(frame(0x0, &priority().repeat(100)));
        assert!(census.read(&bytes));
        let earned: Vec<u8> = (0..PER_STREAM).flat_map(|_| priority()).collect();
        assert!(census.read(&earned));
        census.wrote(WRITTEN_BYTES_PER_UNIT * 10);
        let earned: Vec<u8> = (0..10).flat_map(|_| priority()).collect();
        assert!(census.read(&earned));
        assert!(!census.read(&priority()), "all earned is spent");
    }

    #[test]
    fn frames_split_anywhere_between_reads_are_counted_once() {
        let data = frame(0x0, b"payload");
        let mut bytes = PREFACE.to_vec();
        for _ in 0..=START {
            bytes.extend(priority());
            bytes.extend(&data);
        }
        // The budget is spent by the last PRIORITY frame's header: the chunk that
        // completes it is the first refused.
        let header_end = bytes.len() - data.len() - priority().len() + FRAME_HEADER_LEN;
        for step in [1, 2, 7, 9, 13, 4096] {
            let mut census = FrameCensus::new();
            let verdicts: Vec<bool> = bytes.chunks(step).map(|c| census.read(c)).collect();
            let Some(i) = verdicts.iter().position(|ok| !ok) else {
                panic!("step {step}: the flood was not seen");
            };
            assert!(
                i * step < header_end && header_end <= (i + 1) * step,
                "step {step}: refused at chunk {i}"
            );
        }
    }

    #[test]
    fn an_idle_period_renews_the_budget() {
        let mut census = FrameCensus::new();
        assert!(census.read(PREFACE));
        let flood: Vec<u8> = (0..=START).flat_map(|_| priority()).collect();
        assert!(!census.read(&flood));
        census.renew();
        assert!(census.read(&priority()));
    }
}
