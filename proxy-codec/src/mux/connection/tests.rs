//! One upstream connection against a scripted Bolt peer on an in-memory stream: the
//! in-flight table, the ids and the write buffer's high-water mark seen from inside.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncWrite, DuplexStream, ReadHalf, WriteHalf},
    time::timeout,
};

use super::{Answer, Conn, ConnTask};
use crate::{
    bolt::{self, BoltFrame, BoltVersion},
    io::{read_frame, write_frame},
    metrics::CodecMetrics,
    mux::WRITE_HIGH_WATER,
    Bolt,
};

const LIMIT: Duration = Duration::from_secs(10);

type Peer = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>);

/// A connection (its task running) over an in-memory stream of `capacity` bytes;
/// the peer's ends and the counters.
fn connect(
    capacity: usize,
    max_in_flight: usize,
) -> (Arc<Conn<BoltFrame>>, Peer, Arc<CodecMetrics>) {
    connect_counting(capacity, max_in_flight, Arc::default())
}

/// [`connect`], counting the writes that reach the stream in `writes`.
fn connect_counting(
    capacity: usize,
    max_in_flight: usize,
    writes: Arc<AtomicUsize>,
) -> (Arc<Conn<BoltFrame>>, Peer, Arc<CodecMetrics>) {
    let (ours, theirs) = tokio::io::duplex(capacity);
    let (r, w) = tokio::io::split(ours);
    let w = CountWrites { inner: w, writes };
    let conn = Arc::new(Conn::new(Box::new(w), max_in_flight));
    let metrics = Arc::new(CodecMetrics::default());
    let task = ConnTask {
        protocol: Arc::new(Bolt),
        metrics: metrics.clone(),
        max_frame: 8 << 20,
        heartbeat: None,
    };
    tokio::spawn(task.run(conn.clone(), r));
    (conn, tokio::io::split(theirs), metrics)
}

/// A write half that counts the writes that took bytes.
struct CountWrites {
    inner: WriteHalf<DuplexStream>,
    writes: Arc<AtomicUsize>,
}

impl AsyncWrite for CountWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Relaxed);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn request(content: Bytes) -> BoltFrame {
    BoltFrame {
        version: BoltVersion::V1,
        rpc_type: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: 0,
        codec: bolt::CODEC_HESSIAN2,
        timeout: 0,
        status: 0,
        class_name: Bytes::from_static(bolt::SOFA_REQUEST.as_bytes()),
        header: Bytes::new(),
        content,
    }
}

/// The answer to `req`: its id, `up ` and its content.
fn answer(req: &BoltFrame) -> BoltFrame {
    let mut content = b"up ".to_vec();
    content.extend_from_slice(&req.content);
    BoltFrame {
        rpc_type: bolt::TYPE_RESPONSE,
        cmd_code: bolt::CMD_RESPONSE,
        class_name: Bytes::new(),
        content: content.into(),
        ..req.clone()
    }
}

/// Spawns a call of `text`; yields what it was answered.
fn call(conn: &Arc<Conn<BoltFrame>>, text: impl Into<Bytes>) -> tokio::task::JoinHandle<Bytes> {
    let conn = conn.clone();
    let mut frame = request(text.into());
    tokio::spawn(async move {
        match conn.call(&Bolt, &mut frame, false).await {
            Answer::Response(f) => f.content,
            _ => Bytes::from_static(b"not answered"),
        }
    })
}

async fn next(rd: &mut ReadHalf<DuplexStream>, buf: &mut BytesMut) -> BoltFrame {
    read_frame(&Bolt, rd, buf, 8 << 20)
        .await
        .unwrap()
        .expect("a request")
}

#[tokio::test]
async fn a_dropped_caller_gives_its_slot_up_and_its_late_answer_is_counted() {
    timeout(LIMIT, async {
        let (conn, (mut rd, mut wr), metrics) = connect(1 << 16, 100);
        let mut buf = BytesMut::new();
        // The caller goes away (a timeout) before its answer.
        let mut first = request(Bytes::from_static(b"first"));
        let gone = timeout(
            Duration::from_millis(20),
            conn.call(&Bolt, &mut first, false),
        )
        .await;
        assert!(gone.is_err());
        assert!(
            conn.lock().calls.is_empty(),
            "the slot went with its caller"
        );
        assert_eq!(conn.lock().waiting, 0);
        let first = next(&mut rd, &mut buf).await;
        // A later call is in flight when the late answer comes.
        let second = call(&conn, "second");
        let req = next(&mut rd, &mut buf).await;
        assert_ne!(req.request_id, first.request_id);
        write_frame(&Bolt, &mut wr, &answer(&first)).await.unwrap();
        write_frame(&Bolt, &mut wr, &answer(&req)).await.unwrap();
        assert_eq!(second.await.unwrap(), "up second");
        let unknown = &metrics.bolt.unknown_response_ids;
        assert_eq!(unknown.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(conn.lock().calls.is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn concurrent_calls_on_one_connection_get_their_own_answers() {
    timeout(LIMIT, async {
        let (conn, (mut rd, mut wr), _) = connect(1 << 16, 10_000);
        let calls: Vec<_> = (0..1000)
            .map(|i| call(&conn, format!("call {i}")))
            .collect();
        let mut buf = BytesMut::new();
        let mut reqs = Vec::new();
        for _ in 0..1000 {
            reqs.push(next(&mut rd, &mut buf).await);
        }
        let mut ids: Vec<_> = reqs.iter().map(|r| r.request_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1000, "ids unique on the connection");
        // Answered out of order: last first, then the odd ones, then the even ones.
        reqs.reverse();
        let (odd, even): (Vec<_>, Vec<_>) = reqs.iter().partition(|r| r.request_id % 2 == 1);
        for r in odd.into_iter().chain(even) {
            write_frame(&Bolt, &mut wr, &answer(r)).await.unwrap();
        }
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), format!("up call {i}"));
        }
        assert!(conn.lock().calls.is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn calls_made_while_others_are_in_flight_leave_in_one_write() {
    timeout(LIMIT, async {
        let writes = Arc::new(AtomicUsize::new(0));
        let (conn, (mut rd, mut wr), _) = connect_counting(1 << 20, 1000, writes.clone());
        let mut buf = BytesMut::new();
        // A lone call on a quiet line: its caller writes it.
        let lone = call(&conn, "lone");
        let first = next(&mut rd, &mut buf).await;
        assert_eq!(writes.load(Relaxed), 1);
        // While it waits, one task makes 20 calls in one poll (as a downstream
        // connection does with a pipelined batch): they leave together.
        let batch = tokio::spawn({
            let conn = conn.clone();
            futures_util::future::join_all((0..20).map(move |i| {
                let conn = conn.clone();
                async move {
                    let mut frame = request(format!("batch {i}").into());
                    match conn.call(&Bolt, &mut frame, false).await {
                        Answer::Response(f) => f.content,
                        _ => Bytes::from_static(b"not answered"),
                    }
                }
            }))
        });
        let mut reqs = Vec::new();
        for _ in 0..20 {
            reqs.push(next(&mut rd, &mut buf).await);
        }
        assert_eq!(writes.load(Relaxed), 2, "the 20 calls in one write");
        for r in reqs.iter().chain([&first]) {
            write_frame(&Bolt, &mut wr, &answer(r)).await.unwrap();
        }
        let answers = batch.await.unwrap();
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(*a, format!("up batch {i}"));
        }
        assert_eq!(lone.await.unwrap(), "up lone");
        // The line is quiet again: the next call is written by its caller, at once.
        let again = call(&conn, "again");
        let req = next(&mut rd, &mut buf).await;
        assert_eq!(writes.load(Relaxed), 3);
        write_frame(&Bolt, &mut wr, &answer(&req)).await.unwrap();
        assert_eq!(again.await.unwrap(), "up again");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_write_buffer_takes_no_more_past_the_high_water_mark() {
    timeout(LIMIT, async {
        // A peer that does not read yet, behind a 64 KiB pipe.
        let (conn, (mut rd, mut wr), _) = connect(64 << 10, 10_000);
        let body = Bytes::from(vec![b'x'; 100 << 10]);
        let calls: Vec<_> = (0..40).map(|_| call(&conn, body.clone())).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let st = conn.lock();
            let queued = st.buf.len() + st.in_writer;
            assert!(
                queued < WRITE_HIGH_WATER + (101 << 10),
                "{queued} bytes queued"
            );
            assert!(st.stalled, "callers wait for room");
            let appended = st.calls.len();
            assert!(
                (10..=13).contains(&appended),
                "{appended} requests appended"
            );
        }
        // The peer reads: room comes back, every call goes out and is answered.
        let mut buf = BytesMut::new();
        for _ in 0..40 {
            let req = next(&mut rd, &mut buf).await;
            write_frame(&Bolt, &mut wr, &answer(&req)).await.unwrap();
        }
        for c in calls {
            assert_eq!(c.await.unwrap().len(), 3 + (100 << 10));
        }
    })
    .await
    .unwrap();
}
