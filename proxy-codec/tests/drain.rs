//! A drain on real TCP sockets delivers every answer owed, for Bolt and Dubbo: calls
//! in flight when the drain starts are answered; calls that arrive after it are
//! answered at once with the protocol's "server closing" error (Bolt
//! `SERVER_THREADPOOL_BUSY`; Dubbo `SERVER_THREADPOOL_EXHAUSTED_ERROR`, after the
//! read-only event) and counted as `drain_refused`; the connection ends with a FIN,
//! never a reset, even when the client reads its answers only after the proxy has
//! finished.
//!
//! The client waits before reading on purpose: a connection closed with unread input
//! makes the kernel send a reset, and a reset makes the client's kernel discard the
//! answers it has not read yet (what a real client lost in 2 runs of 7).
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proxy_codec::{
    bolt::{self, BoltFrame},
    config::ServerOptions,
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    io,
    metrics::CodecMetrics,
    Bolt, Dubbo, Protocol, RpcServer,
};
use proxy_core::{BoxHttp, Connection, HttpRequest, HttpResponse, Stream};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::oneshot,
    time::timeout,
};

/// The limit on every test.
const LIMIT: Duration = Duration::from_secs(30);
/// How long the service takes to answer a call.
const DELAY: Duration = Duration::from_millis(400);
/// Calls in flight when the drain starts, and calls sent after it.
const IN_FLIGHT: u64 = 100;
const LATE: u64 = 10;
/// Rounds per test: the loss was a race.
const ROUNDS: usize = 5;

/// What one protocol's round needs: how to build a call and how to read answers.
struct Case<P: Protocol> {
    protocol: P,
    call: fn(u64) -> P::Frame,
    /// Whether a frame is a successful answer.
    ok: fn(&P::Frame) -> bool,
    /// Whether a frame is the "server closing" error.
    refused: fn(&P::Frame) -> bool,
    /// Whether a frame is the protocol's go-away (Dubbo's read-only event).
    goaway: fn(&P::Frame) -> bool,
    /// How many go-aways a drained connection sends.
    goaways: usize,
}

/// A request stack that answers every call after [`DELAY`] and counts its calls.
fn slow_echo(calls: Arc<AtomicUsize>) -> BoxHttp {
    BoxHttp::new(tower::service_fn(move |req: HttpRequest| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(DELAY).await;
            Ok::<_, proxy_core::BoxError>(HttpResponse::new(body.into()))
        }
    }))
}

/// Serves the one connection `listener` accepts until `drain` fires, counting in
/// `metrics`; returns when the connection's task ends.
async fn serve_one<P: Protocol + Copy>(
    protocol: P,
    listener: TcpListener,
    service: BoxHttp,
    drain: oneshot::Receiver<()>,
    metrics: Arc<CodecMetrics>,
) {
    let (stream, peer) = listener.accept().await.unwrap();
    let conn = Connection {
        stream: Stream::Tcp(stream),
        peer: Some(peer),
        listener: "drain".into(),
        secure: false,
        extensions: http::Extensions::new(),
    };
    let server = RpcServer::new(protocol, ServerOptions::default())
        .unwrap()
        .with_metrics(metrics);
    server
        .serve(conn, Bytes::new(), service, async move {
            let _ = drain.await;
        })
        .await;
}

fn wire<P: Protocol>(p: &P, frames: impl IntoIterator<Item = P::Frame>) -> Vec<u8> {
    let mut b = BytesMut::new();
    for f in frames {
        p.encode(&f, &mut b).unwrap();
    }
    b.to_vec()
}

/// One round: [`IN_FLIGHT`] calls, the drain, [`LATE`] calls on the same
/// connection, a pause, then every answer read and the end checked.
async fn round<P: Protocol + Copy>(case: &Case<P>, round: usize) {
    let p = case.protocol;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (drain, drained) = oneshot::channel();
    let metrics = Arc::new(CodecMetrics::default());
    let service = slow_echo(calls.clone());
    let server = tokio::spawn(serve_one(p, listener, service, drained, metrics.clone()));
    let mut client = TcpStream::connect(addr).await.unwrap();

    client
        .write_all(&wire(&p, (1..=IN_FLIGHT).map(case.call)))
        .await
        .unwrap();
    // Every call read and started before the drain.
    let started = std::time::Instant::now();
    while calls.load(Ordering::SeqCst) < IN_FLIGHT as usize {
        assert!(
            started.elapsed() < DELAY / 2,
            "round {round}: calls not started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drain.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client
        .write_all(&wire(&p, (1..=LATE).map(|i| (case.call)(1000 + i))))
        .await
        .unwrap();
    // The proxy answers, shuts down and closes while nothing is read here.
    tokio::time::sleep(DELAY * 3).await;

    let (mut answered, mut refused, mut goaways) = (HashSet::new(), HashSet::new(), 0);
    let mut buf = BytesMut::new();
    loop {
        let frame = match io::read_frame(&p, &mut client, &mut buf, 1 << 20).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => panic!(
                "round {round}: the connection ended with {e} (kind {:?}) after {} answers \
                 and {} refusals: a reset, not a FIN",
                e.kind(),
                answered.len(),
                refused.len()
            ),
        };
        let id = p.request_id(&frame);
        if (case.goaway)(&frame) {
            goaways += 1;
        } else if (case.ok)(&frame) {
            assert!(id <= IN_FLIGHT, "round {round}: late call {id} was served");
            assert!(answered.insert(id), "round {round}: {id} answered twice");
        } else if (case.refused)(&frame) {
            assert!(id > 1000, "round {round}: call {id} in flight was refused");
            assert!(refused.insert(id), "round {round}: {id} refused twice");
        } else {
            panic!("round {round}: unexpected frame {frame:?}");
        }
    }
    // A reset that came after the FIN shows as the socket's pending error (EPIPE):
    // a client that writes before it reads (Node does) loses its unread answers to it.
    let pending = client.take_error().unwrap();
    assert!(
        pending.is_none(),
        "round {round}: the proxy reset the connection ({pending:?})"
    );
    assert_eq!(answered.len() as u64, IN_FLIGHT, "round {round}: answers");
    assert_eq!(refused.len() as u64, LATE, "round {round}: refusals");
    assert_eq!(goaways, case.goaways, "round {round}: go-aways");
    assert_eq!(calls.load(Ordering::SeqCst), IN_FLIGHT as usize);
    timeout(Duration::from_secs(3), server)
        .await
        .expect("the connection task did not end")
        .unwrap();
    let counters = metrics.protocol(p.name());
    assert_eq!(
        counters.drain_refused.load(Ordering::Relaxed),
        LATE,
        "round {round}: drain_refused"
    );
    assert_eq!(
        counters.error_replies.load(Ordering::Relaxed),
        LATE,
        "round {round}: error replies"
    );
}

async fn rounds<P: Protocol + Copy>(case: Case<P>) {
    timeout(LIMIT, async {
        for r in 0..ROUNDS {
            round(&case, r).await;
        }
    })
    .await
    .expect("test timed out");
}

fn bolt_call(id: u64) -> BoltFrame {
    BoltFrame {
        timeout: 5000,
        ..BoltFrame::sofa_request(
            id as u32,
            "com.example.Echo:1.0",
            "echo",
            format!("call {id}"),
        )
    }
}

fn dubbo_call(id: u64) -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.DemoService")
        .string("1.0.0")
        .string("echo")
        .string("Ljava/lang/String;")
        .string(&format!("call {id}"))
        .string_map([("path", "org.example.DemoService")]);
    DubboFrame {
        flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: Bytes::from(w.into_bytes()),
    }
}

#[tokio::test]
async fn bolt_drain_answers_calls_in_flight_and_refuses_late_ones() {
    rounds(Case {
        protocol: Bolt,
        call: bolt_call,
        ok: |f| f.status == bolt::status::SUCCESS,
        refused: |f| f.status == bolt::status::SERVER_THREADPOOL_BUSY,
        goaway: |_| false,
        goaways: 0,
    })
    .await;
}

#[tokio::test]
async fn dubbo_drain_sends_readonly_answers_in_flight_and_refuses_late_ones() {
    rounds(Case {
        protocol: Dubbo,
        call: dubbo_call,
        ok: |f| !f.is_request() && f.status == dubbo::status::OK,
        refused: |f| {
            !f.is_request() && f.status == dubbo::status::SERVER_THREADPOOL_EXHAUSTED_ERROR
        },
        goaway: DubboFrame::is_readonly_event,
        goaways: 1,
    })
    .await;
}

/// Bytes the client sends after the proxy's FIN (it has not read it yet) are read and
/// dropped while the proxy lingers, so the close that follows sends no reset.
#[tokio::test]
async fn bytes_after_the_fin_are_drained_not_reset() {
    timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (drain, drained) = oneshot::channel();
        let metrics = Arc::new(CodecMetrics::default());
        let server = tokio::spawn(serve_one(
            Bolt,
            listener,
            slow_echo(calls.clone()),
            drained,
            metrics.clone(),
        ));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(&wire(&Bolt, [bolt_call(1)]))
            .await
            .unwrap();
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drain.send(()).unwrap();
        // Answered and shut down by now; this call crosses the FIN.
        tokio::time::sleep(DELAY * 2).await;
        client
            .write_all(&wire(&Bolt, [bolt_call(2)]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = BytesMut::new();
        let answer = io::read_frame(&Bolt, &mut client, &mut buf, 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            answer.map(|f| (f.request_id, f.status)),
            Some((1, bolt::status::SUCCESS))
        );
        assert!(io::read_frame(&Bolt, &mut client, &mut buf, 1 << 20)
            .await
            .unwrap()
            .is_none());
        assert!(
            client.take_error().unwrap().is_none(),
            "the proxy reset the connection"
        );
        drop(client);
        timeout(Duration::from_secs(3), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The call that crossed the FIN was dropped unread, not refused.
        assert_eq!(metrics.bolt.drain_refused.load(Ordering::Relaxed), 0);
    })
    .await
    .unwrap();
}
