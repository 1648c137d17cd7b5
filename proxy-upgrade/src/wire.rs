//! The messages of the upgrade protocol and their bytes (see the crate README for the
//! protocol). Pure functions, no I/O: [`encode`] and [`decode`] one message, the
//! descriptors that travel beside a [`Message::Listeners`] are the transport's.
//!
//! ```
//! use proxy_upgrade::wire::{decode, encode, Message};
//! let ready = Message::Ready { claimed: 3, handoff_window: None };
//! let bytes = encode(&ready)?;
//! assert_eq!(&bytes[..4], b"PXUP");
//! assert_eq!(decode(&bytes)?, ready);
//! # Ok::<(), proxy_upgrade::UpgradeError>(())
//! ```

use std::time::Duration;

use proxy_core::{config::ListenAddress, metrics::CarriedValue};

use crate::UpgradeError;
use fields::{check_name, put_record_count, put_text16, Reader};

mod connection;
mod datagram;
mod fields;
mod metrics;

pub use connection::{
    ConnectionRecord, MAX_LAYER_STATE_BYTES, MAX_PROTOCOL_BYTES, MAX_UNREAD_BYTES,
};
pub use datagram::{DatagramRecord, DatagramRole};
pub use metrics::{metrics_messages, MAX_SERIES, MAX_SERIES_BYTES, MAX_SERIES_TOTAL_BYTES};

/// The first bytes of every message.
pub const MAGIC: [u8; 4] = *b"PXUP";
/// The protocol version this crate speaks: 2 adds live connections, 3 their
/// protocol (Bolt, Dubbo) and the `metrics` message, 4 the `datagrams` message
/// (QUIC's UDP sockets and their forwarding channels), 5 a connection's layer
/// state (an idle TLS 1.3 session's keys, so TLS connections go over too), 6 a
/// kind to each value of the `metrics` message (integer or float: histograms' sums,
/// so histograms are carried too).
pub const VERSION: u16 = 6;
/// The oldest version this crate still speaks (listeners only; connections drain).
pub const MIN_VERSION: u16 = 1;
/// Bytes of the fixed header: magic, version, kind, flags, payload length.
pub const HEADER_BYTES: usize = 12;
/// The largest message, header included.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The most descriptors (so records) in one message.
pub const MAX_FDS_PER_MESSAGE: usize = 64;
/// The most listening sockets in one upgrade.
pub const MAX_SOCKETS: usize = 4096;
/// The longest listener name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest error reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Header flag (`listeners`, `datagrams` and `metrics`): another message of the same kind follows.
pub const FLAG_MORE: u8 = 1;

const KIND_HELLO: u8 = 1;
const KIND_LISTENERS: u8 = 2;
const KIND_READY: u8 = 3;
const KIND_DONE: u8 = 4;
const KIND_ERROR: u8 = 5;
const KIND_CONNECTION: u8 = 6;
const KIND_END: u8 = 7;
const KIND_METRICS: u8 = 8;
const KIND_DATAGRAMS: u8 = 9;

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// New to old: asks for the listening sockets.
    Hello {
        /// The new process's id, for the old one's log.
        pid: u32,
    },
    /// Old to new: listening sockets, one descriptor per record, in record order.
    Listeners {
        /// The records of this message's descriptors.
        records: Vec<ListenerRecord>,
        /// Whether another `Listeners` message follows.
        more: bool,
    },
    /// Old to new (version 4), after the last `Listeners`: UDP sockets and their
    /// forwarding channels, one descriptor per record, in record order (always sent,
    /// empty when there are none).
    Datagrams {
        /// The records of this message's descriptors.
        records: Vec<DatagramRecord>,
        /// Whether another `Datagrams` message follows.
        more: bool,
    },
    /// New to old: the new process accepts on the sockets.
    Ready {
        /// How many of the sockets received it accepts on.
        claimed: u32,
        /// Version 2: hand idle connections over, spread over this window (`None`:
        /// drain them, as version 1 does). On the wire in milliseconds, 0 for none.
        handoff_window: Option<Duration>,
    },
    /// Old to new: the old process stopped accepting and drains.
    Done,
    /// Old to new (version 2): a live connection, its socket beside it.
    Connection(ConnectionRecord),
    /// Old to new (version 2): no more connections; `count` were sent.
    End {
        /// How many `Connection` messages came before.
        count: u32,
    },
    /// Old to new (version 3): counter values by series, to carry on from;
    /// version 6: histograms' buckets and counts too, and their sums as floats.
    Metrics {
        /// (series: the name with its labels as rendered, value).
        samples: Vec<(String, CarriedValue)>,
        /// Whether another `Metrics` message follows, completing this set.
        more: bool,
    },
    /// Either way: the upgrade is refused or aborted.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// Why, for a person.
        reason: String,
    },
}

impl Message {
    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Listeners { .. } => "listeners",
            Self::Datagrams { .. } => "datagrams",
            Self::Ready { .. } => "ready",
            Self::Done => "done",
            Self::Connection(_) => "connection",
            Self::End { .. } => "end",
            Self::Metrics { .. } => "metrics",
            Self::Error { .. } => "error",
        }
    }
}

/// The code of a [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Another upgrade is in progress.
    Busy,
    /// The peer speaks another version.
    Version,
    /// A message broke the protocol.
    Protocol,
    /// The old process cannot hand its sockets over.
    Internal,
    /// The peer may not upgrade this process (another user).
    Denied,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    fn to_u16(self) -> u16 {
        match self {
            Self::Busy => 1,
            Self::Version => 2,
            Self::Protocol => 3,
            Self::Internal => 4,
            Self::Denied => 5,
            Self::Other(c) => c,
        }
    }

    fn from_u16(c: u16) -> Self {
        match c {
            1 => Self::Busy,
            2 => Self::Version,
            3 => Self::Protocol,
            4 => Self::Internal,
            5 => Self::Denied,
            c => Self::Other(c),
        }
    }
}

/// What a handed-over listening socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRecord {
    /// The listener's name in the config.
    pub name: String,
    /// Where the socket is bound: TCP (actual port) or Unix path. Its kind is the
    /// record's kind (1 TCP, 2 Unix on the wire; QUIC's UDP sockets are
    /// [`DatagramRecord`]s, kinds 3 and 4, in their own message).
    pub address: ListenAddress,
    /// The worker that accepted on it: its place in the listener's `SO_REUSEPORT`
    /// group.
    pub worker: u16,
}

/// The bytes of `message` in this crate's [`VERSION`].
///
/// # Errors
/// [`UpgradeError::Malformed`] when a field exceeds the protocol's limits (a name
/// over [`MAX_NAME_BYTES`], more than [`MAX_FDS_PER_MESSAGE`] records, unread bytes
/// over [`MAX_UNREAD_BYTES`], a message over [`MAX_MESSAGE_BYTES`]).
pub fn encode(message: &Message) -> Result<Vec<u8>, UpgradeError> {
    encode_version(message, VERSION)
}

/// The bytes of `message` in `version` (to speak to an older peer).
///
/// # Errors
/// As [`encode`], and [`UpgradeError::Malformed`] for a version this crate does not
/// speak or a message (or field) that `version` does not have.
pub fn encode_version(message: &Message, version: u16) -> Result<Vec<u8>, UpgradeError> {
    if !(MIN_VERSION..=VERSION).contains(&version) {
        return Err(malformed(format!("version {version} is not spoken here")));
    }
    let since = |v: u16, what: &str| {
        if version < v {
            Err(malformed(format!("{what} in version {version}")))
        } else {
            Ok(())
        }
    };
    let mut payload = Vec::new();
    let mut flags = 0;
    let kind = match message {
        Message::Hello { pid } => {
            payload.extend_from_slice(&pid.to_be_bytes());
            KIND_HELLO
        }
        Message::Listeners { records, more } => {
            put_record_count(&mut payload, records.len())?;
            for r in records {
                encode_record(&mut payload, r)?;
            }
            if *more {
                flags |= FLAG_MORE;
            }
            KIND_LISTENERS
        }
        Message::Datagrams { records, more } => {
            since(4, "a datagrams message")?;
            datagram::encode(&mut payload, records)?;
            if *more {
                flags |= FLAG_MORE;
            }
            KIND_DATAGRAMS
        }
        Message::Ready {
            claimed,
            handoff_window,
        } => {
            payload.extend_from_slice(&claimed.to_be_bytes());
            if version >= 2 {
                let ms = handoff_window.map_or(0, |w| {
                    u32::try_from(w.as_millis()).unwrap_or(u32::MAX).max(1)
                });
                payload.extend_from_slice(&ms.to_be_bytes());
            } else if handoff_window.is_some() {
                since(2, "a hand-off window")?;
            }
            KIND_READY
        }
        Message::Done => KIND_DONE,
        Message::Connection(record) => {
            since(2, "a connection message")?;
            connection::encode(&mut payload, record, version)?;
            KIND_CONNECTION
        }
        Message::End { count } => {
            since(2, "an end message")?;
            payload.extend_from_slice(&count.to_be_bytes());
            KIND_END
        }
        Message::Metrics { samples, more } => {
            since(3, "a metrics message")?;
            metrics::encode(&mut payload, samples, version)?;
            if *more {
                flags |= FLAG_MORE;
            }
            KIND_METRICS
        }
        Message::Error { code, reason } => {
            let mut end = reason.len().min(MAX_REASON_BYTES);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            payload.extend_from_slice(&code.to_u16().to_be_bytes());
            payload.extend_from_slice(&reason.as_bytes()[..end]);
            KIND_ERROR
        }
    };
    if HEADER_BYTES + payload.len() > MAX_MESSAGE_BYTES {
        return Err(malformed(format!("{} bytes of payload", payload.len())));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn encode_record(out: &mut Vec<u8>, r: &ListenerRecord) -> Result<(), UpgradeError> {
    check_name(&r.name)?;
    let (kind, address) = match &r.address {
        ListenAddress::Tcp(a) => (1u8, a.to_string()),
        ListenAddress::Unix(p) => {
            let p = p
                .to_str()
                .ok_or_else(|| malformed("a Unix path that is not UTF-8".into()))?;
            (2u8, p.to_owned())
        }
    };
    if address.is_empty() || address.len() > usize::from(u16::MAX) {
        return Err(malformed(format!("address of {} bytes", address.len())));
    }
    out.push(kind);
    out.extend_from_slice(&r.worker.to_be_bytes());
    put_text16(out, &r.name);
    put_text16(out, &address);
    Ok(())
}

/// Reads one whole message (as one `SOCK_SEQPACKET` datagram delivers it), of any
/// version this crate speaks.
///
/// # Errors
/// [`UpgradeError::Malformed`] for bytes that are not a message (bad magic, unknown
/// kind, bad fields, bytes left over), [`UpgradeError::Truncated`] when there are
/// fewer bytes than the header says, [`UpgradeError::VersionMismatch`] for a
/// version outside [`MIN_VERSION`]..=[`VERSION`].
pub fn decode(bytes: &[u8]) -> Result<Message, UpgradeError> {
    decode_versioned(bytes).map(|(_, m)| m)
}

/// [`decode`], also giving the message's version.
///
/// # Errors
/// As [`decode`].
pub fn decode_versioned(bytes: &[u8]) -> Result<(u16, Message), UpgradeError> {
    if bytes.len() < HEADER_BYTES {
        if bytes.len() >= 4 && bytes[..4] != MAGIC {
            return Err(malformed("not an upgrade message (bad magic)".into()));
        }
        return Err(UpgradeError::Truncated(format!(
            "{} bytes, shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    if bytes[..4] != MAGIC {
        return Err(malformed("not an upgrade message (bad magic)".into()));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if !(MIN_VERSION..=VERSION).contains(&version) {
        return Err(UpgradeError::VersionMismatch {
            ours: VERSION,
            theirs: version,
        });
    }
    let (kind, flags) = (bytes[6], bytes[7]);
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let payload = &bytes[HEADER_BYTES..];
    if len > MAX_MESSAGE_BYTES - HEADER_BYTES {
        return Err(UpgradeError::Truncated(format!(
            "declared payload of {len} bytes is over the limit"
        )));
    }
    if payload.len() < len {
        return Err(UpgradeError::Truncated(format!(
            "{} bytes of a {len}-byte payload",
            payload.len()
        )));
    }
    if payload.len() > len {
        return Err(malformed(format!(
            "{} bytes after a {len}-byte payload",
            payload.len() - len
        )));
    }
    let may_say_more = matches!(kind, KIND_LISTENERS | KIND_METRICS | KIND_DATAGRAMS);
    if flags & !FLAG_MORE != 0 || (flags != 0 && !may_say_more) {
        return Err(malformed(format!("unknown flags {flags:#04x}")));
    }
    let mut r = Reader(payload);
    let message = match kind {
        KIND_HELLO => Message::Hello { pid: r.u32()? },
        KIND_LISTENERS => {
            let records = (0..r.record_count()?)
                .map(|_| decode_record(&mut r))
                .collect::<Result<_, _>>()?;
            Message::Listeners {
                records,
                more: flags & FLAG_MORE != 0,
            }
        }
        KIND_READY => Message::Ready {
            claimed: r.u32()?,
            handoff_window: match version {
                1 => None,
                _ => Some(r.u32()?)
                    .filter(|ms| *ms > 0)
                    .map(|ms| Duration::from_millis(u64::from(ms))),
            },
        },
        KIND_DONE => Message::Done,
        KIND_CONNECTION if version >= 2 => {
            Message::Connection(connection::decode(&mut r, version)?)
        }
        KIND_END if version >= 2 => Message::End { count: r.u32()? },
        KIND_METRICS if version >= 3 => Message::Metrics {
            samples: metrics::decode(&mut r, version)?,
            more: flags & FLAG_MORE != 0,
        },
        KIND_DATAGRAMS if version >= 4 => Message::Datagrams {
            records: datagram::decode(&mut r)?,
            more: flags & FLAG_MORE != 0,
        },
        KIND_ERROR => {
            let code = ErrorCode::from_u16(r.u16()?);
            let reason = r.take(r.0.len())?;
            if reason.len() > MAX_REASON_BYTES {
                return Err(malformed(format!("error reason of {} bytes", reason.len())));
            }
            let reason = String::from_utf8_lossy(reason).into_owned();
            Message::Error { code, reason }
        }
        k => return Err(malformed(format!("unknown message kind {k}"))),
    };
    if !r.0.is_empty() {
        return Err(malformed(format!(
            "{} bytes left in the {} message",
            r.0.len(),
            message.name()
        )));
    }
    Ok((version, message))
}

fn decode_record(r: &mut Reader<'_>) -> Result<ListenerRecord, UpgradeError> {
    let kind = r.u8()?;
    let worker = r.u16()?;
    let name = r.name()?;
    let address = r.text16("an address")?;
    let address = match kind {
        1 => ListenAddress::Tcp(
            address
                .parse()
                .map_err(|_| malformed(format!("{address:?} is not a TCP address")))?,
        ),
        2 if !address.is_empty() => ListenAddress::Unix(address.into()),
        2 => return Err(malformed("an empty Unix path".into())),
        k => return Err(malformed(format!("unknown socket kind {k}"))),
    };
    Ok(ListenerRecord {
        name,
        address,
        worker,
    })
}

fn malformed(why: String) -> UpgradeError {
    UpgradeError::Malformed(why)
}

#[cfg(test)]
mod tests;
