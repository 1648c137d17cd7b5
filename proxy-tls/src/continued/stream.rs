//! [`ContinuedTlsStream`]: tokio `AsyncRead`/`AsyncWrite` over a transport whose TLS
//! 1.3 session was established elsewhere (by the process that handed it over).

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    cipher::DirectionCipher,
    handover::{Refusal, SessionFacts, TlsHandover},
    record::{alert, Fatal, Inbound, RecordLayer, HEADER_LEN, MAX_CIPHERTEXT},
    secrets::{ContinuedSecrets, SecretsError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The peer's close_notify arrived: reads return end of stream.
    PeerClosed,
    /// The connection failed; reads and writes return this error kind and reason.
    Failed(io::ErrorKind, &'static str),
}

/// A TLS 1.3 server session continued from extracted secrets over `IO`.
///
/// Reads decrypt the client's records (application data; close_notify ends the
/// stream and is answered; any other alert, a record that fails authentication, a
/// malformed or oversized record or an unexpected handshake message ends the
/// connection with the matching alert). Writes seal records of at most 2^14 bytes.
/// A KeyUpdate from the client cannot be followed, because rustls extracts the AEAD
/// keys and not the traffic secrets they derive from: the connection then ends
/// with an `internal_error` alert.
///
/// ```no_run
/// # async fn demo(tcp: tokio::net::TcpStream, encoded: &[u8], unread: &[u8])
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use proxy_tls::continued::{ContinuedSecrets, ContinuedTlsStream};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let secrets = ContinuedSecrets::decode(encoded)?;
/// let mut tls = ContinuedTlsStream::new(tcp, &secrets, unread)?;
/// let mut request = [0u8; 1024];
/// let n = tls.read(&mut request).await?;
/// tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
/// tls.shutdown().await?;
/// # let _ = n; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ContinuedTlsStream<IO> {
    io: IO,
    records: RecordLayer,
    /// Ciphertext received and not yet decrypted.
    inbound: BytesMut,
    /// Decrypted application data not yet read.
    plaintext: BytesMut,
    /// Sealed records not yet written to `io`.
    outbound: Vec<u8>,
    written: usize,
    read_state: ReadState,
    close_notify_sent: bool,
    /// The keys (for a further hand-over) and the session's facts.
    secrets: ContinuedSecrets,
    facts: SessionFacts,
}

impl<IO> ContinuedTlsStream<IO> {
    /// Continues the session in `secrets` over `io`; `unread` is ciphertext the
    /// previous owner had received but not processed, read before `io`.
    pub fn new(io: IO, secrets: &ContinuedSecrets, unread: &[u8]) -> Result<Self, SecretsError> {
        Self::with_facts(io, secrets, unread, SessionFacts::default())
    }

    pub(crate) fn with_facts(
        io: IO,
        secrets: &ContinuedSecrets,
        unread: &[u8],
        facts: SessionFacts,
    ) -> Result<Self, SecretsError> {
        let rx = DirectionCipher::new(secrets.suite(), secrets.rx())
            .ok_or(SecretsError::UnsupportedSuite)?;
        let tx = DirectionCipher::new(secrets.suite(), secrets.tx())
            .ok_or(SecretsError::UnsupportedSuite)?;
        let mut inbound = BytesMut::with_capacity((HEADER_LEN + MAX_CIPHERTEXT).max(unread.len()));
        inbound.extend_from_slice(unread);
        Ok(Self {
            io,
            records: RecordLayer::new(rx, tx),
            inbound,
            plaintext: BytesMut::new(),
            outbound: Vec::new(),
            written: 0,
            read_state: ReadState::Open,
            close_notify_sent: false,
            secrets: secrets.with_sequence_numbers(secrets.tx().seq(), secrets.rx().seq()),
            facts,
        })
    }

    /// Hands the session on again (the next hot upgrade): the transport, and the
    /// hand-over with the current sequence numbers and the ciphertext received and not
    /// decrypted yet. Refused, with the stream given back, while decrypted bytes wait
    /// to be read, sealed records wait to be written, a handshake message is cut
    /// across records, or the session is closing or failed.
    pub fn into_handover(self) -> Result<(IO, TlsHandover), (Box<Self>, Refusal)> {
        let refusal = if !self.plaintext.is_empty() {
            Some(Refusal::BufferedPlaintext)
        } else if self.written < self.outbound.len() {
            Some(Refusal::PendingWrite)
        } else if self.records.handshake_pending() {
            Some(Refusal::PartialRecord)
        } else if self.read_state != ReadState::Open || self.close_notify_sent {
            Some(Refusal::Closed)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err((Box::new(self), refusal));
        }
        let (tx, rx) = self.records.sequence_numbers();
        let secrets = self.secrets.with_sequence_numbers(tx, rx);
        let handover = TlsHandover::new(secrets, self.facts, self.inbound.to_vec());
        Ok((self.io, handover))
    }

    /// The session's facts, as [`TlsHandover::negotiated`] gives them.
    pub fn negotiated(&self) -> crate::accept::Negotiated {
        self.facts.negotiated(self.secrets.suite())
    }

    /// The transport.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The next record sequence numbers, (sent, received).
    pub fn sequence_numbers(&self) -> (u64, u64) {
        self.records.sequence_numbers()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ContinuedTlsStream<IO> {
    /// Writes out the sealed records queued so far.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.outbound.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outbound[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.outbound.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Ends the connection after `fatal`: queues its alert, tries once to send it,
    /// and returns the error every later call returns too.
    fn fail(&mut self, cx: &mut Context<'_>, fatal: Fatal) -> io::Error {
        let kind = match fatal.alert {
            None => io::ErrorKind::ConnectionAborted,
            Some(_) => io::ErrorKind::InvalidData,
        };
        if let Some(description) = fatal.alert {
            if self
                .records
                .seal_alert(description, &mut self.outbound)
                .is_ok()
            {
                self.close_notify_sent = true;
                // Best effort: the connection is ending whether the alert leaves or not.
                let _ = self.poll_write_queued(cx);
            }
        }
        self.read_state = ReadState::Failed(kind, fatal.reason);
        tracing::debug!(reason = fatal.reason, alert = ?fatal.alert, "continued TLS session ended");
        io::Error::new(kind, fatal.reason)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ContinuedTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.read_state {
                ReadState::Open => {}
                ReadState::PeerClosed => return Poll::Ready(Ok(())),
                ReadState::Failed(kind, reason) => {
                    return Poll::Ready(Err(io::Error::new(kind, reason)))
                }
            }
            match this.records.read(&mut this.inbound) {
                Ok(Some(Inbound::Data(data))) => this.plaintext = data,
                Ok(Some(Inbound::CloseNotify)) => {
                    this.read_state = ReadState::PeerClosed;
                    if !this.close_notify_sent
                        && this
                            .records
                            .seal_alert(alert::CLOSE_NOTIFY, &mut this.outbound)
                            .is_ok()
                    {
                        this.close_notify_sent = true;
                        // Sent now if the socket takes it, else by the next flush or
                        // shutdown.
                        let _ = this.poll_write_queued(cx);
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(None) => {
                    if this.inbound.capacity() - this.inbound.len() < 4096 {
                        this.inbound.reserve(HEADER_LEN + MAX_CIPHERTEXT);
                    }
                    let n = ready!(tokio_util::io::poll_read_buf(
                        Pin::new(&mut this.io),
                        cx,
                        &mut this.inbound
                    ))?;
                    if n == 0 {
                        let reason = "peer closed the connection without sending close_notify";
                        this.read_state = ReadState::Failed(io::ErrorKind::UnexpectedEof, reason);
                    }
                }
                Err(fatal) => return Poll::Ready(Err(this.fail(cx, fatal))),
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ContinuedTlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let ReadState::Failed(kind, reason) = this.read_state {
            return Poll::Ready(Err(io::Error::new(kind, reason)));
        }
        if this.close_notify_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after close_notify",
            )));
        }
        ready!(this.poll_write_queued(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = match this.records.seal_data(buf, &mut this.outbound) {
            Ok(n) => n,
            Err(fatal) => return Poll::Ready(Err(this.fail(cx, fatal))),
        };
        // The record is accepted; what the socket does not take now goes out on the
        // next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_write_queued(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_queued(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            this.close_notify_sent = true;
            if matches!(this.read_state, ReadState::Failed(..)) {
                // A fatal alert already went (or could not): no close_notify after it.
            } else if let Err(fatal) = this
                .records
                .seal_alert(alert::CLOSE_NOTIFY, &mut this.outbound)
            {
                return Poll::Ready(Err(io::Error::other(fatal.reason)));
            }
        }
        ready!(this.poll_write_queued(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
