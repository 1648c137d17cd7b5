//! `max_handshakes_in_progress` on real sockets: with a cap of 1 and the first
//! handshake's signing step held on an offload engine, a second connection's
//! ClientHello is not answered until the first handshake's flight is out; without
//! the cap it is answered at once. The wait is counted.

#![allow(clippy::unwrap_used)]

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use proxy_core::{BoxError, Connection, Stream};
use proxy_tls::{
    config::{CertificateConfig, EngineConfig, OffloadConfig, TerminationConfig},
    offload::{EngineStats, OffloadEngine, OffloadJob},
    rotation::{MemorySecrets, Secret},
    TerminationLayer, TlsRuntime,
};
use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::{Layer, ServiceExt};

/// An engine whose first job waits until the test releases it; later jobs run at
/// once, each on a thread of its own.
#[derive(Debug)]
struct Gate {
    first: Mutex<Option<mpsc::Receiver<()>>>,
    submitted: Arc<AtomicUsize>,
    stats: EngineStats,
}

impl OffloadEngine for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn submit(&self, job: OffloadJob) -> Result<(), OffloadJob> {
        let held = self.first.lock().unwrap().take();
        self.submitted.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Some(release) = held {
                let _ = release.recv();
            }
            job.run();
        });
        Ok(())
    }
    fn outstanding(&self) -> usize {
        0
    }
    fn is_healthy(&self) -> bool {
        true
    }
    fn stats(&self) -> &EngineStats {
        &self.stats
    }
}

struct Setup {
    port: u16,
    release: mpsc::Sender<()>,
    submitted: Arc<AtomicUsize>,
    client: Arc<ClientConfig>,
    layer: TerminationLayer,
}

async fn serve(cap: Option<u32>) -> Setup {
    let test = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    secrets.set(
        "web",
        Secret::key_pair(test.cert.pem(), test.key_pair.serialize_pem()),
    );
    let runtime = TlsRuntime::with_secrets(secrets);
    let (release, held) = mpsc::channel();
    let submitted = Arc::new(AtomicUsize::new(0));
    runtime.add_engine(Arc::new(Gate {
        first: Mutex::new(Some(held)),
        submitted: submitted.clone(),
        stats: EngineStats::default(),
    }));
    let mut cfg = TerminationConfig::new(vec![CertificateConfig::secret("web")]);
    cfg.max_handshakes_in_progress = cap.and_then(NonZeroU32::new);
    cfg.offload = Some(OffloadConfig {
        engines: vec![EngineConfig {
            name: "gate".into(),
            threads: NonZeroU32::MIN,
            thread_priority: Default::default(),
        }],
    });
    let layer = TerminationLayer::new(&cfg, &runtime).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let svc = layer.layer(tower::service_fn(|mut conn: Connection| async move {
        // Echo one line, so a client sees the connection serve.
        let mut buf = [0u8; 64];
        let n = conn.stream.read(&mut buf).await?;
        conn.stream.write_all(&buf[..n]).await?;
        Ok::<_, BoxError>(())
    }));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let conn = Connection {
                stream: Stream::Boxed(Box::new(tcp)),
                peer: Some(peer),
                listener: "tls".into(),
                secure: false,
                extensions: Default::default(),
            };
            tokio::spawn(svc.clone().oneshot(conn));
        }
    });
    let mut roots = RootCertStore::empty();
    roots.add(test.cert.der().clone()).unwrap();
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Setup {
        port,
        release,
        submitted,
        client: Arc::new(client),
        layer,
    }
}

/// A full client handshake and one echoed line.
async fn handshake_and_echo(port: u16, client: Arc<ClientConfig>) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client);
    let mut tls = connector
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    tls.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

/// Sends a ClientHello on a new connection; the socket and the client state.
async fn send_client_hello(port: u16, client: Arc<ClientConfig>) -> (TcpStream, ClientConnection) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = ClientConnection::new(client, ServerName::try_from("a.test").unwrap()).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    tcp.write_all(&hello).await.unwrap();
    (tcp, tls)
}

/// Whether the server answers on `tcp` within `wait`.
async fn answered(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(wait, tcp.peek(&mut byte))
        .await
        .is_ok_and(|r| r.is_ok_and(|n| n > 0))
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn over_the_cap_a_client_hello_waits_for_a_slot() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let s = serve(Some(1)).await;
        let metrics = s.layer.metrics().clone();
        // The first handshake takes the only slot; its signing step is held.
        let first = tokio::spawn(handshake_and_echo(s.port, s.client.clone()));
        wait_until("the first signing step is held", || {
            s.submitted.load(Ordering::SeqCst) == 1
        })
        .await;
        let (mut tcp, _tls) = send_client_hello(s.port, s.client.clone()).await;
        // The second ClientHello has been read and waits for the slot, unanswered.
        wait_until("the second connection waits", || {
            metrics.handshakes_waiting() == 1
        })
        .await;
        assert!(!answered(&mut tcp, Duration::from_millis(300)).await);
        assert_eq!(metrics.handshakes(), 0);
        // Released, the first completes and the second gets its ServerHello.
        s.release.send(()).unwrap();
        first.await.unwrap();
        assert!(answered(&mut tcp, Duration::from_secs(5)).await);
        assert_eq!(metrics.handshakes_waiting(), 0);
        assert_eq!(metrics.handshake_slot_waits(), 1);
        // A handshake after them all takes a free slot without waiting.
        drop(tcp);
        handshake_and_echo(s.port, s.client.clone()).await;
        assert_eq!(metrics.handshake_slot_waits(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn without_a_cap_the_second_client_hello_is_answered_at_once() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let s = serve(None).await;
        let metrics = s.layer.metrics().clone();
        let first = tokio::spawn(handshake_and_echo(s.port, s.client.clone()));
        wait_until("the first signing step is held", || {
            s.submitted.load(Ordering::SeqCst) == 1
        })
        .await;
        let (mut tcp, _tls) = send_client_hello(s.port, s.client.clone()).await;
        assert!(answered(&mut tcp, Duration::from_secs(5)).await);
        assert!(!first.is_finished(), "the first handshake is still held");
        s.release.send(()).unwrap();
        first.await.unwrap();
        assert_eq!(metrics.handshake_slot_waits(), 0);
    })
    .await
    .unwrap();
}
