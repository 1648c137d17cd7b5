//! The Dubbo frame: a 16-byte header (magic `0xdabb`, flags, status, request id, body
//! length) and the serialized body.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::{DecodeError, EncodeError};

/// The magic that starts every frame.
pub const MAGIC: u16 = 0xdabb;
/// The header length.
pub const HEADER_LEN: usize = 16;
/// Flag: a request (else a response).
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag: the request expects a response.
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag: an event (heartbeat).
pub const FLAG_EVENT: u8 = 0x20;
/// The serialization id bits of the flags.
pub const SERIALIZATION_MASK: u8 = 0x1f;
/// The serialization id of hessian2.
pub const HESSIAN2: u8 = 2;
/// The data of the read-only event: the hessian2 string `"R"`.
pub(crate) const READONLY_EVENT_DATA: &[u8] = b"\x01R";

/// One Dubbo frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DubboFrame {
    /// Request, two-way and event flags, and the serialization id.
    pub flags: u8,
    /// Responses: the status ([`super::status`]).
    pub status: u8,
    /// The request id.
    pub request_id: u64,
    /// The serialized body.
    pub body: Bytes,
}

impl DubboFrame {
    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// Whether a request expects a response.
    pub fn is_two_way(&self) -> bool {
        self.flags & FLAG_TWO_WAY != 0
    }

    /// Whether this is an event (heartbeat).
    pub fn is_event(&self) -> bool {
        self.flags & FLAG_EVENT != 0
    }

    /// The serialization id.
    pub fn serialization(&self) -> u8 {
        self.flags & SERIALIZATION_MASK
    }

    /// The read-only event a Dubbo server sends on every connection when it starts
    /// shutting down (a one-way event request whose data is `"R"`): clients send no
    /// new calls on the connection while those in flight finish.
    pub fn readonly_event() -> Self {
        Self {
            flags: FLAG_REQUEST | FLAG_EVENT | HESSIAN2,
            status: 0,
            request_id: 0,
            body: Bytes::from_static(READONLY_EVENT_DATA),
        }
    }

    /// Whether this is the read-only event ([`DubboFrame::readonly_event`]).
    pub fn is_readonly_event(&self) -> bool {
        self.is_request() && self.is_event() && self.body[..] == *READONLY_EVENT_DATA
    }
}

/// The total length of the frame at the start of `buf`.
pub(crate) fn frame_length(buf: &[u8]) -> Result<Option<u64>, DecodeError> {
    let n = buf.len().min(2);
    if buf[..n] != MAGIC.to_be_bytes()[..n] {
        return Err(DecodeError::BadMagic("dubbo"));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    let len =
        u64::try_from(len).map_err(|_| DecodeError::Malformed("negative dubbo body length"))?;
    Ok(Some(HEADER_LEN as u64 + len))
}

/// Decodes exactly one frame.
pub(crate) fn decode(frame: Bytes) -> Result<DubboFrame, DecodeError> {
    let total = frame_length(&frame)?.ok_or(DecodeError::Malformed("truncated dubbo frame"))?;
    if total != frame.len() as u64 {
        return Err(DecodeError::Malformed("dubbo frame length mismatch"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&frame[4..12]);
    Ok(DubboFrame {
        flags: frame[2],
        status: frame[3],
        request_id: u64::from_be_bytes(id),
        body: frame.slice(HEADER_LEN..),
    })
}

/// Appends the encoding of `f` to `dst`.
pub(crate) fn encode(f: &DubboFrame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let len = i32::try_from(f.body.len()).map_err(|_| EncodeError::TooLong("body"))?;
    dst.reserve(HEADER_LEN + f.body.len());
    dst.put_u16(MAGIC);
    dst.put_u8(f.flags);
    dst.put_u8(f.status);
    dst.put_u64(f.request_id);
    dst.put_i32(len);
    dst.put_slice(&f.body);
    Ok(())
}

/// The flags and request id of a (possibly malformed) frame head, if readable.
pub(crate) fn head_id(head: &[u8]) -> Option<(u8, u64)> {
    if head.len() < 12 || head[..2] != MAGIC.to_be_bytes() {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[4..12]);
    Some((head[2], u64::from_be_bytes(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let f = DubboFrame {
            flags: FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2,
            status: 0,
            request_id: 0x0102_0304_0506_0708,
            body: Bytes::from_static(b"\x05hello"),
        };
        let mut b = BytesMut::new();
        encode(&f, &mut b).unwrap();
        assert_eq!(
            &b[..16],
            &[0xda, 0xbb, 0xc2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 6]
        );
        assert_eq!(frame_length(&b).unwrap(), Some(22));
        assert_eq!(decode(b.freeze()).unwrap(), f);
        assert!(matches!(
            frame_length(&[0xda, 0xbc]),
            Err(DecodeError::BadMagic(_))
        ));
        assert_eq!(frame_length(&[0xda]).unwrap(), None);
        let mut neg = vec![0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        neg.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(frame_length(&neg).is_err());
    }

    #[test]
    fn readonly_event_as_dubbo_servers_send_it() {
        let mut b = BytesMut::new();
        encode(&DubboFrame::readonly_event(), &mut b).unwrap();
        assert_eq!(
            &b[..],
            &[0xda, 0xbb, 0xa2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x01, b'R']
        );
        assert!(decode(b.freeze()).unwrap().is_readonly_event());
    }
}
