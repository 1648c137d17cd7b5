//! Bolt peers of the hot upgrade tests: an upstream that answers each call after a
//! delay (so calls are in flight at every hand-off), and multiplexed clients that
//! keep calls in flight on one connection each, write every frame in two parts (so
//! some frames are split across a hand-off), ping with heartbeats, and check that
//! every call gets its own answer exactly once, on the socket they opened once.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use proxy_codec::{bolt::status, io, Bolt, FrameKind, Protocol};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

/// The longest frame read.
const MAX_FRAME: usize = 1 << 20;

/// A Bolt upstream on `127.0.0.1:0` answering each call with `ok <request body>`
/// after `delay`, calls of one connection answered concurrently.
pub(crate) async fn slow_upstream(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_slowly(s, delay));
        }
    });
    addr
}

async fn serve_slowly(s: TcpStream, delay: Duration) {
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<BytesMut>();
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::new();
    while let Ok(Some(f)) = io::read_frame(&Bolt, &mut rd, &mut buf, MAX_FRAME).await {
        let reply = match Bolt.kind(&f) {
            FrameKind::Heartbeat => Some(Bolt.heartbeat_reply(&f)),
            FrameKind::Request => {
                let meta = Bolt.request_meta(&f);
                let body = f.content.clone();
                let (head, ()) = http::Response::new(()).into_parts();
                let mut text = b"ok ".to_vec();
                text.extend_from_slice(&body);
                let reply = Bolt.response_from_http(&meta, head, Bytes::from(text));
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut out = BytesMut::new();
                    if Bolt.encode(&reply, &mut out).is_ok() {
                        let _ = tx.send(out);
                    }
                });
                None
            }
            _ => None,
        };
        if let Some(reply) = reply {
            let mut out = BytesMut::new();
            if Bolt.encode(&reply, &mut out).is_ok() {
                let _ = tx.send(out);
            }
        }
    }
}

/// What the Bolt clients saw.
#[derive(Default)]
pub(crate) struct RpcTally {
    /// Calls sent.
    pub(crate) sent: AtomicU64,
    /// Calls answered with success and their own body.
    pub(crate) ok: AtomicU64,
    /// Heartbeats answered.
    pub(crate) heartbeats: AtomicU64,
    /// Connections opened: one per client, if none was closed.
    pub(crate) connects: AtomicU64,
    /// Connections the old processes handed over with bytes unread (from their logs).
    pub(crate) split: AtomicU64,
    pub(crate) failures: Mutex<Vec<String>>,
    pub(crate) stop: AtomicBool,
}

impl RpcTally {
    fn fail(&self, what: String) {
        self.failures.lock().expect("lock").push(what);
    }

    /// The failures so far.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("lock").clone()
    }
}

/// What a client waits an answer for: a call (its body) or a heartbeat.
enum Pending {
    Call(Bytes),
    Heartbeat,
}

/// One multiplexed Bolt client on one connection, opened once: sends a call every
/// `pace` (with a heartbeat every tenth), each frame in two writes, until stopped;
/// then waits for every answer and closes. Any closed or reset connection, missing,
/// duplicate, unknown or wrong answer is a failure.
pub(crate) async fn bolt_client(
    addr: SocketAddr,
    client: u32,
    pace: Duration,
    tally: Arc<RpcTally>,
) {
    tally.connects.fetch_add(1, Ordering::Relaxed);
    let s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return tally.fail(format!("client {client}: connect: {e}")),
    };
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let pending: Arc<Mutex<HashMap<u32, Pending>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (pending, tally, done) = (pending.clone(), tally.clone(), done.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                let f = match io::read_frame(&Bolt, &mut rd, &mut buf, MAX_FRAME).await {
                    Ok(Some(f)) => f,
                    Ok(None) if done.load(Ordering::Acquire) => return,
                    Ok(None) => return tally.fail(format!("client {client}: connection closed")),
                    Err(e) => {
                        return tally.fail(format!("client {client}: read: {e} ({:?})", e.kind()))
                    }
                };
                let id = f.request_id;
                let Some(p) = pending.lock().expect("lock").remove(&id) else {
                    tally.fail(format!(
                        "client {client}: an answer to {id}, unknown or answered already"
                    ));
                    continue;
                };
                match (p, Bolt.kind(&f)) {
                    (Pending::Heartbeat, FrameKind::HeartbeatReply | FrameKind::Response) => {
                        tally.heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                    (Pending::Call(body), FrameKind::Response)
                        if f.status == status::SUCCESS && f.content[..] == [&b"ok "[..], &body[..]].concat()[..] =>
                    {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    (Pending::Call(body), kind) => tally.fail(format!(
                        "client {client}: call {id} ({body:?}) answered {kind:?} status {:#x}: {:?}",
                        f.status, f.content
                    )),
                    (Pending::Heartbeat, kind) => {
                        tally.fail(format!("client {client}: heartbeat {id} answered {kind:?}"));
                    }
                }
            }
        })
    };
    let mut id = 0u32;
    while !tally.stop.load(Ordering::Relaxed) {
        id += 1;
        let frame = if id.is_multiple_of(10) {
            let Some(mut ping) = Bolt.heartbeat() else {
                return tally.fail("Bolt has no heartbeat".into());
            };
            Bolt.set_request_id(&mut ping, u64::from(id));
            pending.lock().expect("lock").insert(id, Pending::Heartbeat);
            ping
        } else {
            let body = Bytes::from(format!("c{client}-{id}"));
            let req = http::Request::post("/com.example.Echo:1.0/echo")
                .body(())
                .expect("request");
            let mut call = Bolt
                .request_from_http(req.into_parts().0, body.clone())
                .expect("a call");
            call.request_id = id;
            pending
                .lock()
                .expect("lock")
                .insert(id, Pending::Call(body));
            tally.sent.fetch_add(1, Ordering::Relaxed);
            call
        };
        let mut out = BytesMut::new();
        Bolt.encode(&frame, &mut out).expect("encode");
        // Two writes, a moment apart: a hand-off may fall between them.
        let half = out.len() / 2;
        let written = async {
            wr.write_all(&out[..half]).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            wr.write_all(&out[half..]).await
        };
        if let Err(e) = written.await {
            tally.fail(format!("client {client}: write: {e} ({:?})", e.kind()));
            break;
        }
        tokio::time::sleep(pace).await;
    }
    // Every answer, then a clean close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending.lock().expect("lock").is_empty()
        && Instant::now() < deadline
        && !reader.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = pending.lock().expect("lock").len();
    if left > 0 {
        tally.fail(format!("client {client}: {left} calls never answered"));
    }
    done.store(true, Ordering::Release);
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
}
