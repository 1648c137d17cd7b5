//! The server handshake: read the ClientHello with rustls's `Acceptor`, pick the
//! config (Guomi or international), run the signing step (inline or on an offload
//! engine), then drive the rest of the handshake, collecting any 0-RTT data.

use std::{io::Read as _, sync::Arc};

use rustls::{
    server::{Acceptor, ServerConnection},
    HandshakeKind, ProtocolVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{server_config::ServerConfigs, slots::HandshakeSlots};
#[cfg(feature = "offload")]
use crate::offload::Dispatcher;
use crate::{error::HandshakeError, identity::PeerIdentityParts};

/// What the handshake established, before the stream is wrapped.
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) conn: ServerConnection,
    pub(crate) early_data: Vec<u8>,
    pub(crate) facts: Negotiated,
}

/// The negotiated parameters of a downstream TLS session, in the connection's
/// extensions (and so in every request's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The SNI name the client sent.
    pub sni: Option<String>,
    /// The ALPN protocol agreed.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite, e.g. `TLS13_AES_128_GCM_SHA256` or `TLS_SM4_GCM_SM3`.
    pub cipher: &'static str,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// Whether the Guomi config served it.
    pub guomi: bool,
    /// The verified client certificate's identity (mutual TLS).
    pub peer: Option<PeerIdentityParts>,
}

/// Handshake read buffer: a ClientHello arrives in pieces of at most this; kept small
/// because every connection still handshaking holds one.
const READ_CHUNK: usize = 4 * 1024;

async fn send(io: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> Result<(), HandshakeError> {
    if bytes.is_empty() {
        return Ok(());
    }
    io.write_all(bytes).await.map_err(HandshakeError::Io)?;
    io.flush().await.map_err(HandshakeError::Io)
}

async fn read_some(
    io: &mut (impl AsyncReadExt + Unpin),
    buf: &mut [u8],
) -> Result<usize, HandshakeError> {
    match io.read(buf).await {
        Ok(0) => Err(HandshakeError::Closed(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Err(HandshakeError::Closed(e))
        }
        Err(e) => Err(HandshakeError::Io(e)),
    }
}

/// Runs the whole server handshake on `io`. On a TLS error the proper alert is
/// written before the error returns.
pub(crate) async fn accept<IO>(
    io: &mut IO,
    configs: &ServerConfigs,
    slots: Option<&HandshakeSlots>,
    #[cfg(feature = "offload")] offload: Option<&Dispatcher>,
) -> Result<Established, HandshakeError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_CHUNK];
    let mut acceptor = Acceptor::default();
    let accepted = loop {
        let n = read_some(io, &mut buf).await?;
        let mut rd = &buf[..n];
        while !rd.is_empty() {
            if let Err(e) = acceptor.read_tls(&mut rd) {
                return Err(HandshakeError::Malformed(rustls::Error::General(
                    e.to_string(),
                )));
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err((err, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                if out.is_empty() {
                    // rustls's Acceptor queues no alert when the first handshake
                    // message is not a ClientHello; RFC 8446 section 4 wants one.
                    out.extend_from_slice(&fallback_alert(&err));
                }
                let _ = send(io, &out).await;
                return Err(HandshakeError::from_rustls(err, true));
            }
        }
    };

    let (config, guomi, sni) = {
        let hello = accepted.client_hello();
        let (config, guomi) = configs.pick(&hello);
        (config, guomi, hello.server_name().map(str::to_owned))
    };

    // The server's work for this handshake starts here: with a cap, only once a slot
    // of this worker is free; held until the server's flight is sent (never while
    // waiting for the client), or until the handshake fails.
    let mut slot = match slots {
        Some(s) => s.acquire().await,
        None => None,
    };

    // The step that signs: ClientHello processing (key exchange, CertificateVerify or
    // ServerKeyExchange). Off the I/O thread when offload is configured.
    #[cfg(feature = "offload")]
    let step = match offload {
        Some(d) => d
            .run(move || accepted.into_connection(config))
            .await
            .map_err(HandshakeError::Offload)?,
        None => accepted.into_connection(config),
    };
    #[cfg(not(feature = "offload"))]
    let step = accepted.into_connection(config);
    let mut conn = match step {
        Ok(conn) => conn,
        Err((err, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            let _ = send(io, &out).await;
            return Err(HandshakeError::from_rustls(err, true));
        }
    };

    let mut early_data = Vec::new();
    let mut out = Vec::new();
    loop {
        if let Some(mut ed) = conn.early_data() {
            let _ = ed.read_to_end(&mut early_data);
        }
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        send(io, &out).await?;
        out.clear();
        // The flight is out: what remains waits for the client.
        drop(slot.take());
        if !conn.is_handshaking() {
            break;
        }
        let n = read_some(io, &mut buf).await?;
        let mut rd = &buf[..n];
        while !rd.is_empty() {
            conn.read_tls(&mut rd).map_err(HandshakeError::Io)?;
            if let Err(err) = conn.process_new_packets() {
                // rustls queued the alert: send it, then fail.
                while conn.wants_write() {
                    if conn.write_tls(&mut out).is_err() {
                        break;
                    }
                }
                let _ = send(io, &out).await;
                return Err(HandshakeError::from_rustls(err, true));
            }
            if let Some(mut ed) = conn.early_data() {
                let _ = ed.read_to_end(&mut early_data);
            }
        }
    }

    let facts = Negotiated {
        sni,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        },
        cipher: conn
            .negotiated_cipher_suite()
            .map_or("unknown", |s| suite_name(s.suite())),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        guomi,
        peer: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(PeerIdentityParts::from_der),
    };
    Ok(Established {
        conn,
        early_data,
        facts,
    })
}

/// The fatal alert record for a ClientHello error rustls left without one:
/// `unexpected_message` for a message of the wrong (or an unknown) handshake type
/// (RFC 8446 section 4), `decode_error` for one that does not parse, else
/// `internal_error`. Record version TLS 1.2, as rustls writes its own alerts.
fn fallback_alert(err: &rustls::Error) -> [u8; 7] {
    use rustls::{AlertDescription as A, Error as E};
    let description = match err {
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            A::UnexpectedMessage
        }
        E::InvalidMessage(_) => A::DecodeError,
        E::PeerIncompatible(_) => A::HandshakeFailure,
        _ => A::InternalError,
    };
    // ContentType::Alert, TLS 1.2, length 2, AlertLevel::Fatal, description.
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, u8::from(description)]
}

fn suite_name(suite: rustls::CipherSuite) -> &'static str {
    #[cfg(feature = "guomi")]
    if suite == crate::guomi::SM4_GCM_SM3 {
        return "TLS_SM4_GCM_SM3";
    }
    #[cfg(feature = "guomi")]
    if suite == crate::guomi::SM4_CCM_SM3 {
        return "TLS_SM4_CCM_SM3";
    }
    suite.as_str().unwrap_or("unknown")
}

/// Wraps an established connection in tokio-rustls's stream (the handshake is
/// already complete, so this only flushes).
pub(crate) async fn into_stream<IO>(
    io: IO,
    mut conn: ServerConnection,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio_rustls::TlsAcceptor::from(config)
        .accept_with(io, |fresh| std::mem::swap(fresh, &mut conn))
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn configs() -> ServerConfigs {
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        ServerConfigs {
            international: Arc::new(config),
            #[cfg(feature = "guomi")]
            guomi: None,
        }
    }

    fn client_hello() -> Vec<u8> {
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
        let mut c =
            ClientConnection::new(Arc::new(config), ServerName::try_from("a.test").unwrap())
                .unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    }

    /// Feeds `bytes` then closes; the handshake must end in an error, never a panic.
    async fn feed(configs: &ServerConfigs, bytes: &[u8]) -> Result<Established, HandshakeError> {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(bytes).await.unwrap();
        client.shutdown().await.unwrap();
        #[cfg(feature = "offload")]
        let accepting = accept(&mut server, configs, None, None);
        #[cfg(not(feature = "offload"))]
        let accepting = accept(&mut server, configs, None);
        let res = tokio::time::timeout(Duration::from_secs(5), accepting)
            .await
            .unwrap();
        drop(server);
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
        res
    }

    #[tokio::test]
    async fn truncated_and_mutated_client_hellos_fail_cleanly() {
        let configs = configs();
        let hello = client_hello();
        for len in 0..hello.len() {
            assert!(feed(&configs, &hello[..len]).await.is_err(), "prefix {len}");
        }
        // Every byte flipped in turn (a bounded sweep): an error or, for bytes that do
        // not matter, a handshake that waits for more and sees EOF. Never a panic.
        for i in 0..hello.len() {
            let mut bad = hello.clone();
            bad[i] ^= 0xa5;
            let _ = feed(&configs, &bad).await;
        }
        // Not TLS at all.
        let err = feed(&configs, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .err()
            .unwrap();
        assert_eq!(err.reason(), "malformed");
    }
}
