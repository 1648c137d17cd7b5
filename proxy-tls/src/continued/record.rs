//! The TLS 1.3 record protocol after the handshake, without I/O (RFC 8446 section 5
//! and 4.6): inbound records are checked, decrypted and classified; outbound
//! application data and alerts are sealed. Every malformed input ends in a [`Fatal`]
//! carrying the alert to send, never a panic.

use bytes::{Buf, BytesMut};

use super::cipher::{CipherError, DirectionCipher, TAG_LEN};

/// Largest TLSInnerPlaintext content (RFC 8446 5.1: 2^14 bytes).
pub(crate) const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest TLSCiphertext fragment (RFC 8446 5.2: 2^14 + 256 bytes).
pub(crate) const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// The record header: type, legacy version, length.
pub(crate) const HEADER_LEN: usize = 5;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

const KEY_UPDATE: u8 = 24;

/// Alert descriptions this layer sends or recognises (RFC 8446 6).
pub(crate) mod alert {
    pub(crate) const CLOSE_NOTIFY: u8 = 0;
    pub(crate) const UNEXPECTED_MESSAGE: u8 = 10;
    pub(crate) const BAD_RECORD_MAC: u8 = 20;
    pub(crate) const RECORD_OVERFLOW: u8 = 22;
    pub(crate) const DECODE_ERROR: u8 = 50;
    pub(crate) const INTERNAL_ERROR: u8 = 80;
    pub(crate) const USER_CANCELED: u8 = 90;
}

/// The header of a protected record of `len` bytes.
pub(crate) fn header(len: u16) -> [u8; HEADER_LEN] {
    let [hi, lo] = len.to_be_bytes();
    [APPLICATION_DATA, 3, 3, hi, lo]
}

/// The connection cannot go on: the alert to send and why, for the error and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fatal {
    /// The alert description to send; `None` when none is sent (the peer's own fatal
    /// alert ended the connection).
    pub(crate) alert: Option<u8>,
    pub(crate) reason: &'static str,
}

impl Fatal {
    fn send(alert: u8, reason: &'static str) -> Self {
        Self {
            alert: Some(alert),
            reason,
        }
    }
}

/// What one inbound record carried that the stream acts on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Application data (possibly empty).
    Data(BytesMut),
    /// The peer's close_notify: no more data follows.
    CloseNotify,
}

/// Both directions' record protection of one continued session.
#[derive(Debug)]
pub(crate) struct RecordLayer {
    rx: DirectionCipher,
    tx: DirectionCipher,
    /// A handshake message cut across records (at most its 4-byte header here: the
    /// only message accepted, KeyUpdate, is five bytes long).
    handshake: Vec<u8>,
}

impl RecordLayer {
    pub(crate) fn new(rx: DirectionCipher, tx: DirectionCipher) -> Self {
        Self {
            rx,
            tx,
            handshake: Vec::new(),
        }
    }

    /// Whether a handshake message's first bytes wait for the rest.
    pub(crate) fn handshake_pending(&self) -> bool {
        !self.handshake.is_empty()
    }

    /// The next sequence numbers, (tx, rx).
    pub(crate) fn sequence_numbers(&self) -> (u64, u64) {
        (self.tx.seq(), self.rx.seq())
    }

    /// Takes the next whole record off the front of `buf` and handles it. `Ok(None)`
    /// means `buf` holds no whole record yet (or only records with nothing for the
    /// reader, which are consumed).
    pub(crate) fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, Fatal> {
        loop {
            let Some(mut record) = next_record(buf)? else {
                return Ok(None);
            };
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&record[..HEADER_LEN]);
            record.advance(HEADER_LEN);
            let inner_len = self.rx.open(&header, &mut record).map_err(|e| match e {
                CipherError::BadRecordMac => {
                    Fatal::send(alert::BAD_RECORD_MAC, "record failed authentication")
                }
                CipherError::SequenceExhausted | CipherError::RecordTooLong => {
                    Fatal::send(alert::INTERNAL_ERROR, "record sequence number exhausted")
                }
            })?;
            record.truncate(inner_len);
            // TLSInnerPlaintext: content, the real type, then zero padding.
            let Some(type_at) = record.iter().rposition(|&b| b != 0) else {
                return Err(Fatal::send(
                    alert::UNEXPECTED_MESSAGE,
                    "record with no content type",
                ));
            };
            if type_at > MAX_PLAINTEXT {
                return Err(Fatal::send(
                    alert::RECORD_OVERFLOW,
                    "record content over 2^14 bytes",
                ));
            }
            let content_type = record[type_at];
            record.truncate(type_at);
            if let Some(inbound) = self.inner(content_type, record)? {
                return Ok(Some(inbound));
            }
        }
    }

    fn inner(&mut self, content_type: u8, content: BytesMut) -> Result<Option<Inbound>, Fatal> {
        if content_type != HANDSHAKE && !self.handshake.is_empty() {
            return Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "handshake message interleaved with another record type",
            ));
        }
        match content_type {
            APPLICATION_DATA => Ok(Some(Inbound::Data(content))),
            ALERT => match content[..] {
                [_, alert::CLOSE_NOTIFY] => Ok(Some(Inbound::CloseNotify)),
                // user_canceled is a warning: close_notify follows it.
                [_, alert::USER_CANCELED] => Ok(None),
                [_, _] => Err(Fatal {
                    alert: None,
                    reason: "peer sent a fatal alert",
                }),
                _ => Err(Fatal::send(alert::DECODE_ERROR, "malformed alert record")),
            },
            HANDSHAKE => self.handshake(&content).map(|()| None),
            _ => Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "unexpected record content type",
            )),
        }
    }

    fn handshake(&mut self, content: &[u8]) -> Result<(), Fatal> {
        if content.is_empty() {
            return Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "empty handshake record",
            ));
        }
        self.handshake.extend_from_slice(content);
        if self.handshake[0] != KEY_UPDATE {
            // Clients send no NewSessionTicket; no other post-handshake message is
            // negotiated by the termination layer (no post-handshake auth).
            return Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "unexpected post-handshake message from the client",
            ));
        }
        let Some(&[_, l0, l1, l2]) = self.handshake.get(..4) else {
            return Ok(());
        };
        if [l0, l1, l2] != [0, 0, 1] || self.handshake.len() > 5 {
            return Err(Fatal::send(alert::DECODE_ERROR, "malformed KeyUpdate"));
        }
        match self.handshake.get(4) {
            None => Ok(()),
            Some(0 | 1) => Err(Fatal::send(
                alert::INTERNAL_ERROR,
                "KeyUpdate on a continued session: the traffic secret is not available",
            )),
            Some(_) => Err(Fatal::send(alert::DECODE_ERROR, "malformed KeyUpdate")),
        }
    }

    /// Seals up to [`MAX_PLAINTEXT`] bytes of `data` as one application data record
    /// appended to `out`; returns how many bytes of `data` it took.
    pub(crate) fn seal_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, Fatal> {
        let n = data.len().min(MAX_PLAINTEXT);
        self.seal(APPLICATION_DATA, &data[..n], out)?;
        Ok(n)
    }

    /// Appends a sealed alert record (`level` 1 for close_notify, 2 otherwise).
    pub(crate) fn seal_alert(&mut self, description: u8, out: &mut Vec<u8>) -> Result<(), Fatal> {
        let level = if description == alert::CLOSE_NOTIFY {
            1
        } else {
            2
        };
        self.seal(ALERT, &[level, description], out)
    }

    fn seal(&mut self, content_type: u8, content: &[u8], out: &mut Vec<u8>) -> Result<(), Fatal> {
        let start = out.len();
        out.reserve(HEADER_LEN + content.len() + 1 + TAG_LEN);
        out.extend_from_slice(&[0; HEADER_LEN]);
        out.extend_from_slice(content);
        out.push(content_type);
        self.tx.seal(out, start).map_err(|_| {
            out.truncate(start);
            Fatal::send(alert::INTERNAL_ERROR, "record sequence number exhausted")
        })
    }
}

/// Splits the next whole record off `buf`, after checking its header.
fn next_record(buf: &mut BytesMut) -> Result<Option<BytesMut>, Fatal> {
    let Some(&[content_type, _, _, hi, lo]) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    match content_type {
        APPLICATION_DATA => {}
        CHANGE_CIPHER_SPEC => {
            return Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "change_cipher_spec after the handshake",
            ))
        }
        _ => {
            return Err(Fatal::send(
                alert::UNEXPECTED_MESSAGE,
                "unprotected record after the handshake",
            ))
        }
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_CIPHERTEXT {
        return Err(Fatal::send(
            alert::RECORD_OVERFLOW,
            "record over 2^14 + 256 bytes",
        ));
    }
    if len < TAG_LEN + 1 {
        return Err(Fatal::send(
            alert::BAD_RECORD_MAC,
            "record shorter than its tag",
        ));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(HEADER_LEN + len)))
}
