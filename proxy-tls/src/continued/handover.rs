//! Taking a quiescent TLS 1.3 server session out of its tokio-rustls stream
//! ([`extract`]) as a [`TlsHandover`], the bytes that travel with the socket, and
//! serving it on in the process that receives them ([`TlsHandover::continue_on`]).

use rustls::{pki_types::CertificateDer, HandshakeKind, ProtocolVersion, ServerConnection};
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

use super::{
    boundary::RecordBoundary,
    secrets::{CipherSuite, ContinuedSecrets, SecretsError},
    stream::ContinuedTlsStream,
};
use crate::{accept::Negotiated, identity::PeerIdentityParts};

/// The hand-over encoding's version byte.
const VERSION: u8 = 1;

/// Why a TLS session stays in this process (it drains there instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only TLS 1.3 sessions are continued.
    #[error("not a TLS 1.3 session")]
    NotTls13,
    /// The handshake has not finished.
    #[error("handshake in progress")]
    Handshaking,
    /// rustls has records to send.
    #[error("TLS records waiting to be sent")]
    PendingWrite,
    /// Decrypted bytes wait to be read.
    #[error("decrypted bytes not read yet")]
    BufferedPlaintext,
    /// rustls holds part of a record (it would be lost with the session).
    #[error("part of a record read")]
    PartialRecord,
    /// The peer closed its side, or the session failed.
    #[error("session closed or failed")]
    Closed,
}

/// Why [`extract`] did not give a hand-over.
#[derive(Debug)]
pub enum ExtractError<IO> {
    /// The session cannot go; the stream is given back unchanged, to serve on.
    Refused(Box<TlsStream<RecordBoundary<IO>>>, Refusal),
    /// rustls refused to extract after the checks passed (secret extraction not
    /// enabled in the server config, or a suite this layer does not continue, such
    /// as a Guomi one); the session is gone and `IO` is given back to close.
    Lost(IO, String),
}

/// A TLS 1.3 server session's state for another process: the traffic keys and
/// sequence numbers, and the facts a freshly terminated connection carries (SNI,
/// ALPN, whether it was resumed, the client's end-entity certificate with mutual TLS).
///
/// ```
/// use proxy_tls::continued::TlsHandover;
///
/// assert!(TlsHandover::decode(b"\x01").is_err());
/// ```
#[derive(Debug)]
pub struct TlsHandover {
    secrets: ContinuedSecrets,
    facts: SessionFacts,
    /// Ciphertext received and not processed yet (whole or partial records).
    unread: Zeroizing<Vec<u8>>,
}

/// What a terminated session tells the request path, besides its keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct SessionFacts {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    resumed: bool,
    peer_certificate: Option<Vec<u8>>,
}

impl SessionFacts {
    pub(crate) fn negotiated(&self, suite: CipherSuite) -> Negotiated {
        Negotiated {
            sni: self.sni.clone(),
            alpn: self.alpn.clone(),
            version: "TLSv1.3",
            cipher: match suite {
                CipherSuite::Aes128Gcm => "TLS13_AES_128_GCM_SHA256",
                CipherSuite::Aes256Gcm => "TLS13_AES_256_GCM_SHA384",
                CipherSuite::Chacha20Poly1305 => "TLS13_CHACHA20_POLY1305_SHA256",
            },
            resumed: self.resumed,
            guomi: false,
            peer: self
                .peer_certificate
                .as_deref()
                .and_then(|der| PeerIdentityParts::from_der(&CertificateDer::from(der))),
        }
    }
}

/// Takes the session out of `stream` when it is quiescent: TLS 1.3, nothing to
/// send, nothing decrypted and unread, no partial record read, not closed. Returns the
/// transport (no longer read or written by rustls) and the hand-over.
pub fn extract<IO>(
    mut stream: TlsStream<RecordBoundary<IO>>,
) -> Result<(IO, TlsHandover), ExtractError<IO>> {
    let (io, conn) = stream.get_mut();
    if let Err(refusal) = quiescent(io, conn) {
        return Err(ExtractError::Refused(Box::new(stream), refusal));
    }
    let (io, conn) = stream.into_inner();
    let io = io.into_inner();
    let sni = conn.server_name().map(str::to_owned);
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let peer_certificate = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    let secrets = match conn.dangerous_extract_secrets() {
        Ok(extracted) => ContinuedSecrets::from_extracted(extracted),
        Err(error) => return Err(ExtractError::Lost(io, error.to_string())),
    };
    let facts = SessionFacts {
        sni,
        alpn,
        resumed,
        peer_certificate,
    };
    match secrets {
        Ok(secrets) => Ok((io, TlsHandover::new(secrets, facts, Vec::new()))),
        Err(error) => Err(ExtractError::Lost(io, error.to_string())),
    }
}

fn quiescent<IO>(io: &RecordBoundary<IO>, conn: &mut ServerConnection) -> Result<(), Refusal> {
    if conn.is_handshaking() {
        return Err(Refusal::Handshaking);
    }
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Err(Refusal::NotTls13);
    }
    if conn.wants_write() {
        return Err(Refusal::PendingWrite);
    }
    if !io.at_record_boundary() {
        return Err(Refusal::PartialRecord);
    }
    // Processes nothing new (every whole record read was processed when it was
    // read); reports what is buffered.
    let state = conn.process_new_packets().map_err(|_| Refusal::Closed)?;
    if state.peer_has_closed() {
        return Err(Refusal::Closed);
    }
    if state.plaintext_bytes_to_read() > 0 {
        return Err(Refusal::BufferedPlaintext);
    }
    if state.tls_bytes_to_write() > 0 {
        return Err(Refusal::PendingWrite);
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            // Every field fits: secrets < 100 bytes, SNI and ALPN < 256, a
            // certificate is capped at 2^24 by TLS itself.
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn take<'a>(input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, SecretsError> {
    let (&flag, rest) = input.split_first().ok_or(SecretsError::Malformed)?;
    match flag {
        0 => {
            *input = rest;
            Ok(None)
        }
        1 => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(SecretsError::Malformed)?;
            let len =
                usize::try_from(u32::from_be_bytes(*len)).map_err(|_| SecretsError::Malformed)?;
            if rest.len() < len {
                return Err(SecretsError::Malformed);
            }
            let (field, rest) = rest.split_at(len);
            *input = rest;
            Ok(Some(field))
        }
        _ => Err(SecretsError::Malformed),
    }
}

impl TlsHandover {
    pub(crate) fn new(secrets: ContinuedSecrets, facts: SessionFacts, unread: Vec<u8>) -> Self {
        Self {
            secrets,
            facts,
            unread: Zeroizing::new(unread),
        }
    }

    /// The session's traffic keys and sequence numbers.
    pub fn secrets(&self) -> &ContinuedSecrets {
        &self.secrets
    }

    /// The encoding that travels with the socket: a version byte, then the secrets,
    /// SNI, ALPN, client certificate and unread ciphertext as optional
    /// length-prefixed fields (a flag byte, a big-endian `u32` length, the bytes) and
    /// a resumed byte. Zeroed when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let secrets = self.secrets.encode();
        let mut out = Zeroizing::new(Vec::with_capacity(
            secrets.len()
                + 64
                + self.facts.peer_certificate.as_ref().map_or(0, Vec::len)
                + self.unread.len(),
        ));
        out.push(VERSION);
        put(&mut out, Some(&secrets));
        put(&mut out, self.facts.sni.as_deref().map(str::as_bytes));
        put(&mut out, self.facts.alpn.as_deref());
        put(&mut out, self.facts.peer_certificate.as_deref());
        put(&mut out, Some(&self.unread));
        out.push(u8::from(self.facts.resumed));
        out
    }

    /// Reads [`encode`](Self::encode)'s form; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Self, SecretsError> {
        let Some((&VERSION, mut input)) = bytes.split_first() else {
            return Err(SecretsError::Malformed);
        };
        let secrets = take(&mut input)?.ok_or(SecretsError::Malformed)?;
        let secrets = ContinuedSecrets::decode(secrets)?;
        let sni = take(&mut input)?
            .map(|s| std::str::from_utf8(s).map(str::to_owned))
            .transpose()
            .map_err(|_| SecretsError::Malformed)?;
        let alpn = take(&mut input)?.map(<[u8]>::to_vec);
        let peer_certificate = take(&mut input)?.map(<[u8]>::to_vec);
        let unread = take(&mut input)?.ok_or(SecretsError::Malformed)?.to_vec();
        let resumed = match input {
            [0] => false,
            [1] => true,
            _ => return Err(SecretsError::Malformed),
        };
        let facts = SessionFacts {
            sni,
            alpn,
            resumed,
            peer_certificate,
        };
        Ok(Self::new(secrets, facts, unread))
    }

    /// The facts a freshly terminated connection gives the request path
    /// ([`Negotiated`], from which the termination layer fills core's `TlsInfo`).
    pub fn negotiated(&self) -> Negotiated {
        self.facts.negotiated(self.secrets.suite())
    }

    /// Serves the session on over `io` (the socket that came with it), reading the
    /// ciphertext received and not processed by the previous owner first.
    pub fn continue_on<IO>(self, io: IO) -> Result<ContinuedTlsStream<IO>, SecretsError> {
        ContinuedTlsStream::with_facts(io, &self.secrets, &self.unread, self.facts)
    }
}
