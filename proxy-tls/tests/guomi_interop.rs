//! Guomi (RFC 8998) interop with an independent TLS stack: Tongsuo (BabaSSL),
//! from the `tongsuopy` wheel, driven through ctypes by
//! `tests/interop/tongsuo_peer.py`. TLS 1.3 with TLS_SM4_GCM_SM3, curveSM2
//! and sm2sig_sm3, both directions, mutual TLS, application data both ways.
//!
//! The wheel is installed by `scripts/deps/proxy-tls-guomi.sh`; without it the
//! tests print `SKIPPED:` and pass.

#![allow(clippy::unwrap_used, missing_docs)]

use crate::tongsuo;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use proxy_tls::guomi::{
    GuomiClientBuilder, GuomiServerBuilder, CURVE_SM2_GROUP, SM4_CCM_SM3, SM4_GCM_SM3,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tongsuo::{key_of, python_cmd, tongsuo_python, Pki, SM2_SIGNED, TEST_TIMEOUT};

#[tokio::test]
async fn tongsuo_client_to_our_server() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("server");
        let config = GuomiServerBuilder::new(vec![pki.server.der.clone()], key_of(&pki.server))
            .unwrap()
            .client_auth(pki.roots(), true)
            .build()
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client_der = pki.client.der.clone();

        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.negotiated_cipher_suite().unwrap().suite(), SM4_GCM_SM3);
            assert_eq!(
                conn.negotiated_key_exchange_group().unwrap().name(),
                CURVE_SM2_GROUP
            );
            assert_eq!(
                conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            // Tongsuo sends the client certificate, and the root it chains to.
            let chain = conn.peer_certificates().unwrap();
            assert_eq!(chain[0], client_der, "the client certificate first");
            let mut buf = vec![0u8; 64];
            let n = tls.read(&mut buf).await.unwrap();
            tls.write_all(b"pong from rustls").await.unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        });

        let args = [
            "client".to_string(),
            "--port".into(),
            port.to_string(),
            "--ca".into(),
            pki.path("ca.pem"),
            "--cert".into(),
            pki.path("client.pem"),
            "--key".into(),
            pki.path("client.key"),
            "--send".into(),
            "ping from tongsuo".into(),
        ];
        let mut cmd = python_cmd(&python);
        cmd.args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("tongsuo client stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(out.status.success(), "tongsuo client failed");
        assert!(stdout.contains("VERSION TLSv1.3"), "{stdout}");
        assert!(stdout.contains("CIPHER TLS_SM4_GCM_SM3"), "{stdout}");
        for line in SM2_SIGNED {
            assert!(
                stdout.contains(line),
                "server signed with SM2-SM3: {stdout}"
            );
        }
        assert!(stdout.contains("CN=localhost"), "{stdout}");
        assert!(stdout.contains("VERIFY_RESULT 0"), "{stdout}");
        assert!(stdout.contains("RECEIVED pong from rustls"), "{stdout}");
        assert_eq!(server.await.unwrap(), "ping from tongsuo");
    })
    .await
    .unwrap();
}

/// Tongsuo offering only TLS_SM4_CCM_SM3 gets CCM from our server; without a
/// client certificate it is refused by a server that requires one.
#[tokio::test]
async fn tongsuo_ccm_client_and_a_client_without_certificate() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("ccm");
        let config = Arc::new(
            GuomiServerBuilder::new(vec![pki.server.der.clone()], key_of(&pki.server))
                .unwrap()
                .client_auth(pki.roots(), true)
                .build()
                .unwrap(),
        );
        for with_cert in [true, false] {
            let acceptor = TlsAcceptor::from(config.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await?;
                let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
                let mut buf = vec![0u8; 64];
                let n = tls.read(&mut buf).await?;
                tls.write_all(&buf[..n]).await?;
                tls.shutdown().await?;
                Ok::<_, std::io::Error>(suite)
            });
            let mut args = vec![
                "client".to_string(),
                "--port".into(),
                port.to_string(),
                "--ca".into(),
                pki.path("ca.pem"),
                "--ciphersuites".into(),
                "TLS_SM4_CCM_SM3".into(),
            ];
            if with_cert {
                args.extend([
                    "--cert".into(),
                    pki.path("client.pem"),
                    "--key".into(),
                    pki.path("client.key"),
                ]);
            }
            let mut cmd = python_cmd(&python);
            cmd.args(args);
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("tongsuo client (client certificate: {with_cert}):\n{stdout}");
            let result = server.await.unwrap();
            if with_cert {
                assert!(out.status.success(), "{stdout}");
                assert!(stdout.contains("CIPHER TLS_SM4_CCM_SM3"), "{stdout}");
                assert!(stdout.contains("RECEIVED ping from tongsuo"), "{stdout}");
                assert_eq!(result.unwrap(), SM4_CCM_SM3);
            } else {
                assert!(!out.status.success(), "refused: {stdout}");
                assert!(stdout.contains("ERROR"), "{stdout}");
                assert!(
                    result.is_err(),
                    "our server refuses a client without certificate"
                );
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn our_client_to_tongsuo_server() {
    let Some(python) = tongsuo_python() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let pki = Pki::new("client");
        let mut cmd = python_cmd(&python);
        cmd.args([
            "server",
            "--cert",
            &pki.path("server.pem"),
            "--key",
            &pki.path("server.key"),
            "--ca",
            &pki.path("ca.pem"),
            "--verify-client",
            "--reply",
            "pong from tongsuo",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Reads "PORT n", then the rest of the output until the peer exits.
        let reader = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout);
            let mut seen = String::new();
            let mut port_tx = Some(port_tx);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(p) = line.trim().strip_prefix("PORT ") {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(p.parse::<u16>().unwrap());
                    }
                }
                seen.push_str(&line);
                line.clear();
            }
            seen
        });
        let port = match tokio::time::timeout(Duration::from_secs(20), port_rx).await {
            Ok(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!(
                    "tongsuo server did not start: {}\n{err}",
                    reader.await.unwrap()
                );
            }
        };

        let config = GuomiClientBuilder::new(pki.roots())
            .client_cert(vec![pki.client.der.clone()], key_of(&pki.client))
            .unwrap()
            .build()
            .unwrap();
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        {
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.negotiated_cipher_suite().unwrap().suite(), SM4_GCM_SM3);
            assert_eq!(
                conn.negotiated_key_exchange_group().unwrap().name(),
                CURVE_SM2_GROUP
            );
            let chain = conn.peer_certificates().unwrap();
            assert_eq!(chain[0], pki.server.der, "the server certificate first");
        }
        tls.write_all(b"ping from rustls").await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong from tongsuo");
        let _ = tls.shutdown().await;

        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let out = reader.await.unwrap();
        eprintln!("tongsuo server stdout:\n{out}");
        assert!(status.success(), "tongsuo server failed: {out}");
        assert!(out.contains("CIPHER TLS_SM4_GCM_SM3"), "{out}");
        for line in SM2_SIGNED {
            assert!(out.contains(line), "client signed with SM2-SM3: {out}");
        }
        assert!(out.contains("CN=guomi client"), "{out}");
        assert!(out.contains("VERIFY_RESULT 0"), "{out}");
        assert!(out.contains("RECEIVED ping from rustls"), "{out}");
    })
    .await
    .unwrap();
}
