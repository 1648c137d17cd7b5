//! The `connection` message of version 2: a live connection's listener, peer and
//! unread bytes (its socket travels beside it).

use std::net::SocketAddr;

use super::{malformed, Reader, MAX_NAME_BYTES};
use crate::UpgradeError;

/// The most unread bytes a connection carries: what fits in one message with the
/// longest name and address. A connection with more read and not parsed (part of a
/// head that long) is not handed over: it finishes its request in the old process.
pub const MAX_UNREAD_BYTES: usize = 63 * 1024;

/// A live connection handed over: which listener accepted it, its peer, and the
/// bytes the old process read from it but did not parse (at most part of a request
/// head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The listener's name in the config.
    pub listener: String,
    /// The peer of a TCP connection; `None` for a Unix one.
    pub peer: Option<SocketAddr>,
    /// Bytes read and not parsed yet, at most [`MAX_UNREAD_BYTES`].
    pub unread: Vec<u8>,
}

/// `kind: u8` (1 TCP, 2 Unix), `name_len: u16` and the listener name, `peer_len: u16`
/// and the peer (`ip:port`; empty for Unix), `unread_len: u32` and the bytes.
pub(super) fn encode(out: &mut Vec<u8>, r: &ConnectionRecord) -> Result<(), UpgradeError> {
    if r.listener.is_empty() || r.listener.len() > MAX_NAME_BYTES {
        return Err(malformed(format!(
            "listener name of {} bytes",
            r.listener.len()
        )));
    }
    if r.unread.len() > MAX_UNREAD_BYTES {
        return Err(malformed(format!(
            "{} unread bytes (at most {MAX_UNREAD_BYTES})",
            r.unread.len()
        )));
    }
    let peer = r.peer.map(|p| p.to_string()).unwrap_or_default();
    out.push(if r.peer.is_some() { 1 } else { 2 });
    out.extend_from_slice(&(r.listener.len() as u16).to_be_bytes());
    out.extend_from_slice(r.listener.as_bytes());
    out.extend_from_slice(&(peer.len() as u16).to_be_bytes());
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(&(r.unread.len() as u32).to_be_bytes());
    out.extend_from_slice(&r.unread);
    Ok(())
}

pub(super) fn decode(r: &mut Reader<'_>) -> Result<ConnectionRecord, UpgradeError> {
    let kind = r.u8()?;
    let name_len = usize::from(r.u16()?);
    if name_len == 0 || name_len > MAX_NAME_BYTES {
        return Err(malformed(format!("listener name of {name_len} bytes")));
    }
    let listener = std::str::from_utf8(r.take(name_len)?)
        .map_err(|_| malformed("a listener name that is not UTF-8".into()))?
        .to_owned();
    let peer_len = usize::from(r.u16()?);
    let peer = std::str::from_utf8(r.take(peer_len)?)
        .map_err(|_| malformed("a peer address that is not UTF-8".into()))?;
    let peer = match kind {
        1 => Some(
            peer.parse()
                .map_err(|_| malformed(format!("{peer:?} is not a TCP peer address")))?,
        ),
        2 if peer.is_empty() => None,
        2 => return Err(malformed("a Unix connection with a peer address".into())),
        k => return Err(malformed(format!("unknown connection kind {k}"))),
    };
    let unread_len = r.u32()? as usize;
    if unread_len > MAX_UNREAD_BYTES {
        return Err(malformed(format!(
            "{unread_len} unread bytes (at most {MAX_UNREAD_BYTES})"
        )));
    }
    let unread = r.take(unread_len)?.to_vec();
    Ok(ConnectionRecord {
        listener,
        peer,
        unread,
    })
}
