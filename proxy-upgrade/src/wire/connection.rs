//! The `connection` message of version 2: a live connection's listener, peer and
//! unread bytes (its socket travels beside it); version 3 adds its protocol, version
//! 5 the state of the connection layer that wrapped it (TLS).

use std::net::SocketAddr;

use proxy_core::LayerState;

use super::{check_name, malformed, put_text16, Reader};
use crate::UpgradeError;

/// The most unread bytes a connection carries: what fits in one message with the
/// longest name and address. A connection with more read and not parsed (part of a
/// head that long) is not handed over: it finishes its request in the old process.
pub const MAX_UNREAD_BYTES: usize = 63 * 1024;

/// The longest protocol name, in bytes.
pub const MAX_PROTOCOL_BYTES: usize = 255;

/// The largest layer state (a TLS session: keys, SNI, ALPN, the client's certificate
/// and ciphertext read and not decrypted). The whole message must still fit in
/// [`super::MAX_MESSAGE_BYTES`].
pub const MAX_LAYER_STATE_BYTES: usize = 48 * 1024;

/// A live connection handed over: which listener accepted it, its peer, the bytes
/// the old process read from it but did not parse (part of a request head, part of
/// a frame), and (version 3) the protocol plug-in that served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The listener's name in the config.
    pub listener: String,
    /// The peer of a TCP connection; `None` for a Unix one.
    pub peer: Option<SocketAddr>,
    /// Bytes read and not parsed yet, at most [`MAX_UNREAD_BYTES`].
    pub unread: Vec<u8>,
    /// Version 3: the protocol plug-in serving it (`bolt`, `dubbo`); `None` for a
    /// connection the listener's usual path serves (HTTP/1.1, or not sniffed yet).
    pub protocol: Option<String>,
    /// Version 5: the state of the connection layer that wrapped the socket (an
    /// idle TLS 1.3 session: its keys and sequence numbers, SNI, ALPN, client
    /// certificate); `unread` is then the layer's plaintext. Zeroed when dropped,
    /// and never printed (`Debug` shows its length).
    pub layer_state: Option<LayerState>,
}

/// `kind: u8` (1 TCP, 2 Unix), `name_len: u16` and the listener name, `peer_len: u16`
/// and the peer (`ip:port`; empty for Unix), `unread_len: u32` and the bytes; version
/// 3: `protocol_len: u8` and the protocol name (0: none); version 5: `layer: u8` (0
/// none, 1 present), then when present `state_len: u32` and the layer's state.
pub(super) fn encode(
    out: &mut Vec<u8>,
    r: &ConnectionRecord,
    version: u16,
) -> Result<(), UpgradeError> {
    check_name(&r.listener)?;
    if r.unread.len() > MAX_UNREAD_BYTES {
        return Err(malformed(format!(
            "{} unread bytes (at most {MAX_UNREAD_BYTES})",
            r.unread.len()
        )));
    }
    let protocol = r.protocol.as_deref().unwrap_or_default();
    if protocol.len() > MAX_PROTOCOL_BYTES || (r.protocol.is_some() && protocol.is_empty()) {
        return Err(malformed(format!(
            "protocol name of {} bytes",
            protocol.len()
        )));
    }
    if version < 3 && r.protocol.is_some() {
        return Err(malformed(format!(
            "a {protocol} connection in version {version}"
        )));
    }
    if let Some(state) = &r.layer_state {
        if version < 5 {
            return Err(malformed(format!(
                "a layered (TLS) connection in version {version}"
            )));
        }
        if state.as_bytes().len() > MAX_LAYER_STATE_BYTES {
            return Err(malformed(format!(
                "a layer state of {} bytes (at most {MAX_LAYER_STATE_BYTES})",
                state.as_bytes().len()
            )));
        }
    }
    let peer = r.peer.map(|p| p.to_string()).unwrap_or_default();
    out.push(if r.peer.is_some() { 1 } else { 2 });
    put_text16(out, &r.listener);
    put_text16(out, &peer);
    out.extend_from_slice(&(r.unread.len() as u32).to_be_bytes());
    out.extend_from_slice(&r.unread);
    if version >= 3 {
        out.push(protocol.len() as u8);
        out.extend_from_slice(protocol.as_bytes());
    }
    if version >= 5 {
        match &r.layer_state {
            None => out.push(0),
            Some(state) => {
                out.push(1);
                out.extend_from_slice(&(state.as_bytes().len() as u32).to_be_bytes());
                out.extend_from_slice(state.as_bytes());
            }
        }
    }
    Ok(())
}

pub(super) fn decode(r: &mut Reader<'_>, version: u16) -> Result<ConnectionRecord, UpgradeError> {
    let kind = r.u8()?;
    let listener = r.name()?;
    let peer = r.text16("a peer address")?;
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
    let protocol = match version {
        3.. => match usize::from(r.u8()?) {
            0 => None,
            n => Some(
                std::str::from_utf8(r.take(n)?)
                    .map_err(|_| malformed("a protocol name that is not UTF-8".into()))?
                    .to_owned(),
            ),
        },
        _ => None,
    };
    let layer_state = match version {
        5.. => match r.u8()? {
            0 => None,
            1 => {
                let len = r.u32()? as usize;
                if len > MAX_LAYER_STATE_BYTES {
                    return Err(malformed(format!(
                        "a layer state of {len} bytes (at most {MAX_LAYER_STATE_BYTES})"
                    )));
                }
                Some(LayerState::new(r.take(len)?.to_vec()))
            }
            f => return Err(malformed(format!("layer state flag {f}"))),
        },
        _ => None,
    };
    Ok(ConnectionRecord {
        listener,
        peer,
        unread,
        protocol,
        layer_state,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode, decode_versioned, encode, encode_version, Message, HEADER_BYTES};
    use super::*;

    fn bolt(unread: &[u8]) -> ConnectionRecord {
        ConnectionRecord {
            listener: "rpc".into(),
            peer: Some("127.0.0.1:40000".parse().expect("peer")),
            unread: unread.to_vec(),
            protocol: Some("bolt".into()),
            layer_state: None,
        }
    }

    #[test]
    fn a_protocol_connection_round_trips_in_version_3() {
        // Half a Bolt frame travels as it was read.
        let m = Message::Connection(bolt(&[0x01, 0x01, 0x00, 0x01, 0x01]));
        let bytes = encode_version(&m, 3).expect("encode");
        assert_eq!(&bytes[4..6], &3u16.to_be_bytes());
        assert_eq!(decode(&bytes).expect("decode"), m);
        // The protocol is the record's last field: length, then the name.
        assert_eq!(&bytes[bytes.len() - 5..], b"\x04bolt");
    }

    #[test]
    fn version_2_has_no_protocol_field() {
        assert!(matches!(
            encode_version(&Message::Connection(bolt(b"")), 2),
            Err(UpgradeError::Malformed(_))
        ));
        let mut http = bolt(b"GET /");
        http.protocol = None;
        let v2 = encode_version(&Message::Connection(http.clone()), 2).expect("encode");
        let v3 = encode_version(&Message::Connection(http.clone()), 3).expect("encode");
        assert_eq!(v3.len(), v2.len() + 1);
        assert_eq!(
            decode_versioned(&v2).expect("decode"),
            (2, Message::Connection(http))
        );
    }

    #[test]
    fn bad_protocol_fields_are_errors() {
        for name in [String::new(), "p".repeat(MAX_PROTOCOL_BYTES + 1)] {
            let mut c = bolt(b"");
            c.protocol = Some(name);
            assert!(matches!(
                encode(&Message::Connection(c)),
                Err(UpgradeError::Malformed(_))
            ));
        }
        // In version 3, where the protocol is the record's last field.
        let good = encode_version(&Message::Connection(bolt(b"")), 3).expect("encode");
        // A name that is not UTF-8.
        let mut bytes = good.clone();
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
        // A name longer than the payload: truncated.
        let mut bytes = good;
        let at = bytes.len() - 5;
        bytes[at] = 200;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Truncated(_))));
        assert!(HEADER_BYTES < at);
    }

    fn tls(unread: &[u8]) -> ConnectionRecord {
        ConnectionRecord {
            listener: "web".into(),
            peer: Some("127.0.0.1:40001".parse().expect("peer")),
            unread: unread.to_vec(),
            protocol: None,
            layer_state: Some(LayerState::new(b"tls session state".to_vec())),
        }
    }

    #[test]
    fn a_tls_connection_round_trips_in_version_5() {
        let m = Message::Connection(tls(b"GET / HT"));
        let bytes = encode_version(&m, 5).expect("encode");
        assert_eq!(&bytes[4..6], &5u16.to_be_bytes());
        assert_eq!(decode(&bytes).expect("decode"), m);
        // The same in later versions.
        assert_eq!(decode(&encode(&m).expect("encode")).expect("decode"), m);
        // The state is the record's last field: flag, length, bytes.
        let tail = &bytes[bytes.len() - 22..];
        assert_eq!(&tail[..5], &[1, 0, 0, 0, 17]);
        // Its Debug output shows no state bytes.
        assert!(!format!("{m:?}").contains("session"));
    }

    #[test]
    fn older_versions_carry_no_layer_state() {
        for version in [2, 3, 4] {
            assert!(matches!(
                encode_version(&Message::Connection(tls(b"")), version),
                Err(UpgradeError::Malformed(_))
            ));
        }
        // A plain connection in version 5 has a zero flag, and decodes in 4 without.
        let mut plain = tls(b"GET");
        plain.layer_state = None;
        let v4 = encode_version(&Message::Connection(plain.clone()), 4).expect("encode");
        let v5 = encode(&Message::Connection(plain.clone())).expect("encode");
        assert_eq!(v5.len(), v4.len() + 1);
        assert_eq!(v5[v5.len() - 1], 0);
        assert_eq!(
            decode_versioned(&v4).expect("decode"),
            (4, Message::Connection(plain))
        );
    }

    #[test]
    fn bad_layer_state_fields_are_errors() {
        let good = encode(&Message::Connection(tls(b""))).expect("encode");
        let flag_at = good.len() - 22;
        // An unknown flag.
        let mut bytes = good.clone();
        bytes[flag_at] = 2;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
        // A length past the payload: truncated.
        let mut bytes = good.clone();
        bytes[flag_at + 4] = 200;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Truncated(_))));
        // A length over the limit.
        let mut bytes = good.clone();
        bytes[flag_at + 1..flag_at + 5].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
        // A state too large to send.
        let mut big = tls(b"");
        big.layer_state = Some(LayerState::new(vec![0; MAX_LAYER_STATE_BYTES + 1]));
        assert!(matches!(
            encode(&Message::Connection(big)),
            Err(UpgradeError::Malformed(_))
        ));
        // The connection kind with a listeners payload: not a connection.
        let mut bytes = good;
        bytes[6] = 2;
        assert!(decode(&bytes).is_err());
    }
}
