//! Raw frames on sockets, without node: the captured frames of `tests/fixtures`,
//! framing and request ids read from the bytes, a replaying upstream.

use std::{path::Path, time::Duration};

use bytes::BytesMut;
use proxy_test_support::{
    client::raw,
    upstream::{spawn_raw, Upstream},
};
use tokio::io::AsyncWriteExt;

use super::Proto;

/// The bytes of `tests/fixtures/<name>.bin`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The whole length of the frame starting `buf`, once its fixed header is there.
pub(crate) fn frame_len(wire: Proto, buf: &[u8]) -> Option<usize> {
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
    let u32_at =
        |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]) as usize;
    match wire {
        Proto::Dubbo => (buf.len() >= 16).then(|| 16 + u32_at(12)),
        Proto::Bolt if buf.first() == Some(&1) => {
            let response = *buf.get(1)? == 0;
            let head = if response { 20 } else { 22 };
            (buf.len() >= head).then(|| {
                if response {
                    head + u16_at(12) + u16_at(14) + u32_at(16)
                } else {
                    head + u16_at(14) + u16_at(16) + u32_at(18)
                }
            })
        }
        Proto::Bolt => {
            let response = *buf.get(2)? == 0;
            let head = if response { 22 } else { 24 };
            (buf.len() >= head).then(|| {
                let len = if response {
                    head + u16_at(14) + u16_at(16) + u32_at(18)
                } else {
                    head + u16_at(16) + u16_at(18) + u32_at(20)
                };
                if buf[11] == 1 {
                    len + 4
                } else {
                    len
                }
            })
        }
    }
}

/// The request id of a frame.
pub(crate) fn frame_id(wire: Proto, frame: &[u8]) -> u64 {
    match wire {
        Proto::Dubbo => u64::from_be_bytes(frame[4..12].try_into().unwrap()),
        Proto::Bolt => {
            let at = if frame[0] == 2 { 6 } else { 5 };
            u64::from(u32::from_be_bytes(frame[at..at + 4].try_into().unwrap()))
        }
    }
}

/// The frame with its request id replaced (Bolt v1 and Dubbo: no checksum to redo).
pub(crate) fn with_id(wire: Proto, frame: &[u8], id: u64) -> Vec<u8> {
    let mut out = frame.to_vec();
    match wire {
        Proto::Dubbo => out[4..12].copy_from_slice(&id.to_be_bytes()),
        Proto::Bolt => {
            assert_eq!(frame[0], 1, "with_id rewrites Bolt v1 frames only");
            out[5..9].copy_from_slice(&u32::try_from(id).unwrap().to_be_bytes());
        }
    }
    out
}

/// Reads one whole frame (10 s limit).
pub(crate) async fn read_frame(
    wire: Proto,
    s: &mut tokio::net::TcpStream,
    buf: &mut BytesMut,
) -> Vec<u8> {
    tokio::time::timeout(
        Duration::from_secs(10),
        raw::read_frame(s, buf, |b| frame_len(wire, b)),
    )
    .await
    .expect("a frame within 10 s")
    .unwrap_or_else(|| {
        panic!(
            "connection closed before a whole frame ({} bytes buffered)",
            buf.len()
        )
    })
    .to_vec()
}

/// An upstream that answers every request frame with `response` under the request's
/// id, heartbeats with `heartbeat_reply`, and stays silent on one-way requests.
pub(crate) fn replay_upstream(
    wire: Proto,
    response: Vec<u8>,
    heartbeat_reply: Vec<u8>,
) -> Upstream {
    spawn_raw(move |mut s, _| {
        let (response, heartbeat_reply) = (response.clone(), heartbeat_reply.clone());
        async move {
            let mut buf = BytesMut::new();
            while let Some(frame) = raw::read_frame(&mut s, &mut buf, |b| frame_len(wire, b)).await
            {
                let id = frame_id(wire, &frame);
                let reply = match wire {
                    // flag: 0x80 request, 0x40 two-way, 0x20 event
                    Proto::Dubbo if frame[2] & 0x20 != 0 => Some(&heartbeat_reply),
                    Proto::Dubbo if frame[2] & 0x40 != 0 => Some(&response),
                    Proto::Dubbo => None,
                    // type 1 request, 2 one-way; cmdcode 0 heartbeat
                    Proto::Bolt if frame[2..4] == [0, 0] => Some(&heartbeat_reply),
                    Proto::Bolt if frame[1] == 1 => Some(&response),
                    Proto::Bolt => None,
                };
                if let Some(reply) = reply {
                    if s.write_all(&with_id(wire, reply, id)).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}
