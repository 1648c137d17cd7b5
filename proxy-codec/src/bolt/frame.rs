//! Bolt v1 and v2 frames: the fixed header, class name, header map and content, and
//! v2's optional CRC32 trailer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    crc32::crc32,
    protocol::{DecodeError, EncodeError},
};

/// Protocol code of Bolt v1.
pub const PROTOCOL_V1: u8 = 0x01;
/// Protocol code of Bolt v2.
pub const PROTOCOL_V2: u8 = 0x02;
/// `type`: a response.
pub const TYPE_RESPONSE: u8 = 0x00;
/// `type`: a request expecting a response.
pub const TYPE_REQUEST: u8 = 0x01;
/// `type`: a one-way request.
pub const TYPE_ONEWAY: u8 = 0x02;
/// Command code of heartbeats (and their acks).
pub const CMD_HEARTBEAT: u16 = 0x00;
/// Command code of RPC requests.
pub const CMD_REQUEST: u16 = 0x01;
/// Command code of RPC responses.
pub const CMD_RESPONSE: u16 = 0x02;
/// Codec code of hessian2.
pub const CODEC_HESSIAN2: u8 = 0x01;
/// The v2 protocol switch bit that turns the CRC32 trailer on.
pub const SWITCH_CRC: u8 = 0x01;

/// Which Bolt protocol a frame uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoltVersion {
    /// Protocol code 1.
    V1,
    /// Protocol code 2, with its protocol version (`ver1`) and switch byte.
    V2 {
        /// `ver1`, the protocol version (1 or 2).
        version: u8,
        /// The switch byte; with protocol version 2, bit 0 adds the CRC32 trailer.
        switch: u8,
    },
}

impl BoltVersion {
    /// Whether the frame ends in a CRC32: protocol version 2 with the CRC switch on
    /// (as SOFA Bolt's decoder reads it; the switch alone does not add one in version 1).
    fn has_crc(self) -> bool {
        matches!(self, Self::V2 { version: 2, switch } if switch & SWITCH_CRC != 0)
    }
}

/// One Bolt frame (request, one-way request, response or heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoltFrame {
    /// v1 or v2.
    pub version: BoltVersion,
    /// [`TYPE_RESPONSE`], [`TYPE_REQUEST`] or [`TYPE_ONEWAY`].
    pub rpc_type: u8,
    /// [`CMD_HEARTBEAT`], [`CMD_REQUEST`] or [`CMD_RESPONSE`].
    pub cmd_code: u16,
    /// The command version (`ver2`).
    pub ver2: u8,
    /// The request id.
    pub request_id: u32,
    /// The serializer of the content ([`CODEC_HESSIAN2`], protobuf 11, ...).
    pub codec: u8,
    /// Requests: the caller's timeout in milliseconds (0: none).
    pub timeout: i32,
    /// Responses: the response status ([`super::status`]).
    pub status: u16,
    /// The class name of the content.
    pub class_name: Bytes,
    /// The header map (SOFARPC's simple map serialization).
    pub header: Bytes,
    /// The serialized payload.
    pub content: Bytes,
}

impl BoltFrame {
    /// A SOFARPC call: Bolt v1, two-way, hessian2, of class
    /// [`SOFA_REQUEST`](super::SOFA_REQUEST), no timeout, calling `service`'s `method` with `content` as its serialized
    /// payload. The header map carries what SOFARPC routes by: `service`,
    /// `sofa_head_target_service` and `sofa_head_method_name`. Set the other fields
    /// with struct update syntax.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use proxy_codec::{bolt::{BoltFrame, BoltVersion}, Bolt, Protocol, RpcInfo};
    ///
    /// # fn main() -> Result<(), proxy_core::BoxError> {
    /// let call = BoltFrame {
    ///     version: BoltVersion::V2 { version: 1, switch: 0 },
    ///     timeout: 3000,
    ///     ..BoltFrame::sofa_request(7, "com.example.Echo:1.0", "echo", "hello")
    /// };
    /// let mut wire = BytesMut::new();
    /// Bolt.encode(&call, &mut wire)?;
    /// let req = Bolt.request_to_http(Bolt.decode(wire.freeze())?)?;
    /// assert_eq!(req.uri().path(), "/com.example.Echo:1.0/echo");
    /// let rpc = req.extensions().get::<RpcInfo>().expect("rpc facts");
    /// assert_eq!(&*rpc.method, "echo");
    /// # Ok(())
    /// # }
    /// ```
    pub fn sofa_request(
        request_id: u32,
        service: &str,
        method: &str,
        content: impl Into<Bytes>,
    ) -> Self {
        Self {
            version: BoltVersion::V1,
            rpc_type: TYPE_REQUEST,
            cmd_code: CMD_REQUEST,
            ver2: 1,
            request_id,
            codec: CODEC_HESSIAN2,
            timeout: 0,
            status: 0,
            class_name: Bytes::from_static(super::SOFA_REQUEST.as_bytes()),
            header: super::Bolt::header_map([
                ("service", Some(service)),
                ("sofa_head_target_service", Some(service)),
                ("sofa_head_method_name", Some(method)),
            ]),
            content: content.into(),
        }
    }

    /// Whether this is a request (two-way or one-way), including heartbeats.
    pub fn is_request(&self) -> bool {
        self.rpc_type != TYPE_RESPONSE
    }
}

/// The fixed header length for a frame of `proto` and `rpc_type`.
fn fixed_len(proto: u8, rpc_type: u8) -> usize {
    match (proto, rpc_type == TYPE_RESPONSE) {
        (PROTOCOL_V1, false) => 22,
        (PROTOCOL_V1, true) => 20,
        (_, false) => 24,
        (_, true) => 22,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The total length of the frame at the start of `buf`, from its fixed header.
pub(crate) fn frame_length(buf: &[u8]) -> Result<Option<u64>, DecodeError> {
    let Some(&proto) = buf.first() else {
        return Ok(None);
    };
    let type_at = match proto {
        PROTOCOL_V1 => 1,
        PROTOCOL_V2 => 2,
        _ => return Err(DecodeError::BadMagic("bolt")),
    };
    let Some(&rpc_type) = buf.get(type_at) else {
        return Ok(None);
    };
    if rpc_type > TYPE_ONEWAY {
        return Err(DecodeError::Malformed("unknown bolt command type"));
    }
    let fixed = fixed_len(proto, rpc_type);
    if buf.len() < fixed {
        return Ok(None);
    }
    let lens = fixed - 8;
    let class = u64::from(be16(buf, lens));
    let header = u64::from(be16(buf, lens + 2));
    let content = be32(buf, lens + 4);
    if content > i32::MAX as u32 {
        return Err(DecodeError::Malformed("negative bolt content length"));
    }
    let crc = if proto == PROTOCOL_V2 && buf[1] == 2 && buf[11] & SWITCH_CRC != 0 {
        4
    } else {
        0
    };
    Ok(Some(
        fixed as u64 + class + header + u64::from(content) + crc,
    ))
}

/// Decodes exactly one frame.
pub(crate) fn decode(frame: Bytes) -> Result<BoltFrame, DecodeError> {
    let total = frame_length(&frame)?.ok_or(DecodeError::Malformed("truncated bolt frame"))?;
    if total != frame.len() as u64 {
        return Err(DecodeError::Malformed("bolt frame length mismatch"));
    }
    let b = &frame[..];
    let (version, rpc_type, at) = match b[0] {
        PROTOCOL_V1 => (BoltVersion::V1, b[1], 2),
        _ => (
            BoltVersion::V2 {
                version: b[1],
                switch: b[11],
            },
            b[2],
            3,
        ),
    };
    let cmd_code = be16(b, at);
    let ver2 = b[at + 2];
    let request_id = be32(b, at + 3);
    let codec = b[at + 7];
    let after_codec = if version == BoltVersion::V1 {
        at + 8
    } else {
        at + 9
    };
    let (timeout, status) = if rpc_type == TYPE_RESPONSE {
        (0, be16(b, after_codec))
    } else {
        (be32(b, after_codec) as i32, 0)
    };
    let fixed = fixed_len(b[0], rpc_type);
    let class_len = usize::from(be16(b, fixed - 8));
    let header_len = usize::from(be16(b, fixed - 6));
    let content_len = be32(b, fixed - 4) as usize;
    if version.has_crc() {
        let body_end = frame.len() - 4;
        if crc32(&b[..body_end]) != be32(b, body_end) {
            return Err(DecodeError::Checksum);
        }
    }
    let class_at = fixed;
    let header_at = class_at + class_len;
    let content_at = header_at + header_len;
    Ok(BoltFrame {
        version,
        rpc_type,
        cmd_code,
        ver2,
        request_id,
        codec,
        timeout,
        status,
        class_name: frame.slice(class_at..header_at),
        header: frame.slice(header_at..content_at),
        content: frame.slice(content_at..content_at + content_len),
    })
}

/// Appends the encoding of `f` to `dst`.
pub(crate) fn encode(f: &BoltFrame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let class_len =
        u16::try_from(f.class_name.len()).map_err(|_| EncodeError::TooLong("class name"))?;
    let header_len =
        u16::try_from(f.header.len()).map_err(|_| EncodeError::TooLong("header map"))?;
    let content_len =
        i32::try_from(f.content.len()).map_err(|_| EncodeError::TooLong("content"))?;
    let start = dst.len();
    let proto = match f.version {
        BoltVersion::V1 => PROTOCOL_V1,
        BoltVersion::V2 { .. } => PROTOCOL_V2,
    };
    dst.reserve(
        fixed_len(proto, f.rpc_type) + f.class_name.len() + f.header.len() + f.content.len() + 4,
    );
    dst.put_u8(proto);
    if let BoltVersion::V2 { version, .. } = f.version {
        dst.put_u8(version);
    }
    dst.put_u8(f.rpc_type);
    dst.put_u16(f.cmd_code);
    dst.put_u8(f.ver2);
    dst.put_u32(f.request_id);
    dst.put_u8(f.codec);
    if let BoltVersion::V2 { switch, .. } = f.version {
        dst.put_u8(switch);
    }
    if f.rpc_type == TYPE_RESPONSE {
        dst.put_u16(f.status);
    } else {
        dst.put_i32(f.timeout);
    }
    dst.put_u16(class_len);
    dst.put_u16(header_len);
    dst.put_i32(content_len);
    dst.put_slice(&f.class_name);
    dst.put_slice(&f.header);
    dst.put_slice(&f.content);
    if f.version.has_crc() {
        let crc = crc32(&dst[start..]);
        dst.put_u32(crc);
    }
    Ok(())
}

/// The request id and version of a (possibly malformed) frame head, if readable.
pub(crate) fn head_id(head: &[u8]) -> Option<(BoltVersion, u8, u32, u8)> {
    match *head.first()? {
        PROTOCOL_V1 if head.len() >= 10 => Some((BoltVersion::V1, head[1], be32(head, 5), head[9])),
        PROTOCOL_V2 if head.len() >= 12 => Some((
            BoltVersion::V2 {
                version: head[1],
                switch: head[11],
            },
            head[2],
            be32(head, 6),
            head[10],
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: BoltVersion, rpc_type: u8) -> BoltFrame {
        BoltFrame {
            version,
            rpc_type,
            cmd_code: if rpc_type == TYPE_RESPONSE {
                CMD_RESPONSE
            } else {
                CMD_REQUEST
            },
            ver2: 1,
            request_id: 7,
            codec: CODEC_HESSIAN2,
            timeout: if rpc_type == TYPE_RESPONSE { 0 } else { 3000 },
            status: if rpc_type == TYPE_RESPONSE { 4 } else { 0 },
            class_name: Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest"),
            header: Bytes::from_static(b"\0\0\0\x01k\0\0\0\x01v"),
            content: Bytes::from_static(b"payload"),
        }
    }

    #[test]
    fn round_trips_with_exact_layout() {
        for version in [
            BoltVersion::V1,
            BoltVersion::V2 {
                version: 1,
                switch: 0,
            },
            BoltVersion::V2 {
                version: 2,
                switch: 1,
            },
        ] {
            for t in [TYPE_REQUEST, TYPE_ONEWAY, TYPE_RESPONSE] {
                let f = sample(version, t);
                let mut buf = BytesMut::new();
                encode(&f, &mut buf).unwrap();
                assert_eq!(frame_length(&buf).unwrap(), Some(buf.len() as u64));
                assert_eq!(decode(buf.freeze()).unwrap(), f);
            }
        }
        let mut buf = BytesMut::new();
        encode(&sample(BoltVersion::V1, TYPE_REQUEST), &mut buf).unwrap();
        assert_eq!(&buf[..5], &[1, 1, 0, 1, 1]);
        assert_eq!(&buf[5..9], &[0, 0, 0, 7]);
        assert_eq!(buf[9], 1);
        assert_eq!(&buf[10..14], &3000u32.to_be_bytes());
        assert_eq!(buf.len(), 22 + 44 + 10 + 7);
    }

    #[test]
    fn crc_is_checked() {
        let mut buf = BytesMut::new();
        encode(
            &sample(
                BoltVersion::V2 {
                    version: 2,
                    switch: 1,
                },
                TYPE_REQUEST,
            ),
            &mut buf,
        )
        .unwrap();
        let n = buf.len();
        buf[n - 6] ^= 0xff;
        assert!(matches!(decode(buf.freeze()), Err(DecodeError::Checksum)));
    }

    #[test]
    fn bad_heads() {
        assert!(matches!(frame_length(&[9]), Err(DecodeError::BadMagic(_))));
        assert!(matches!(
            frame_length(&[1, 5]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(frame_length(&[1, 1, 0]).unwrap(), None);
        let mut head = vec![1u8, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        head.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            frame_length(&head),
            Err(DecodeError::Malformed(_))
        ));
    }
}
