//! The hand-off of a hot upgrade at the connection loop: what is in flight is
//! answered and written, what was read and not parsed is given back, nothing after
//! the moment is read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proxy_core::{BoxError, BoxHttp, HttpRequest, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{serve_connection, ServeParams, Signal};
use crate::{
    bolt::status, config::ServerOptions, io, metrics::Counters, Bolt, Dubbo, FrameKind, Protocol,
};

fn call(id: u32, body: &'static str) -> BytesMut {
    let req = http::Request::post("/com.example.Echo:1.0/echo")
        .body(())
        .expect("request");
    let mut frame = Bolt
        .request_from_http(req.into_parts().0, Bytes::from_static(body.as_bytes()))
        .expect("call");
    frame.request_id = id;
    let mut out = BytesMut::new();
    Bolt.encode(&frame, &mut out).expect("encode");
    out
}

#[tokio::test]
async fn a_hand_off_writes_the_answers_owed_and_gives_back_the_partial_frame() {
    let slow = tower::service_fn(|req: HttpRequest| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, BoxError>(HttpResponse::new(format!("ok {}", req.uri().path()).into()))
    });
    let (options, counters) = (ServerOptions::default(), Counters::default());
    let params = ServeParams {
        protocol: &Bolt,
        options: &options,
        counters: &counters,
        extensions: http::Extensions::new(),
        idle_timeout: None,
        frame_timeout: None,
        resumed: false,
    };
    let (mut client, conn) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(conn);
    let (go, moment) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = moment.await;
        Signal::HandOff {
            max_unread: 1 << 16,
        }
    };
    let first = call(1, "first");
    let second = call(2, "second");
    let half = second.len() / 2;
    let server = serve_connection(
        params,
        &mut rd,
        &mut wr,
        Bytes::new(),
        BoxHttp::new(slow),
        signal,
    );
    let peer = async {
        client.write_all(&first).await.expect("write");
        client.write_all(&second[..half]).await.expect("write");
        // The server reads both, starts the first call, then its moment comes.
        tokio::time::sleep(Duration::from_millis(10)).await;
        go.send(()).expect("moment");
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Sent after the moment: left in the socket for the new process.
        client.write_all(&second[half..]).await.expect("write");
    };
    let (unread, ()) = tokio::join!(server, peer);
    let unread = unread.expect("handed over, not closed");
    assert_eq!(&unread[..], &second[..half], "the partial frame comes back");
    // The first call's answer was written before the hand-off; nothing else was.
    let mut buf = BytesMut::new();
    let answer = io::read_frame(&Bolt, &mut client, &mut buf, 1 << 20)
        .await
        .expect("read")
        .expect("an answer");
    assert_eq!((answer.request_id, answer.status), (1, status::SUCCESS));
    assert_eq!(answer.content, "ok /com.example.Echo:1.0/echo");
    assert!(buf.is_empty());
    let mut more = [0u8; 1];
    let extra = tokio::time::timeout(Duration::from_millis(50), client.read(&mut more)).await;
    assert!(extra.is_err(), "nothing written after the answer owed");
    // The rest of the frame is still in the socket: unread + rest is the whole call.
    let mut rest = vec![0u8; second.len() - half];
    rd.read_exact(&mut rest).await.expect("the rest");
    assert_eq!([&unread[..], &rest[..]].concat(), &second[..]);
    // No go-away, no refusal: nothing counted as refused.
    assert_eq!(
        counters
            .drain_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn too_many_unread_bytes_drain_instead() {
    // More unread than the new process takes: the connection drains here.
    let echo = tower::service_fn(|_: HttpRequest| async move {
        Ok::<_, BoxError>(HttpResponse::new("ok".into()))
    });
    let (options, counters) = (ServerOptions::default(), Counters::default());
    let params = ServeParams {
        protocol: &Bolt,
        options: &options,
        counters: &counters,
        extensions: http::Extensions::new(),
        idle_timeout: None,
        frame_timeout: None,
        resumed: false,
    };
    let (mut client, conn) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(conn);
    let second = call(2, "second");
    client.write_all(&second[..10]).await.expect("write");
    let signal = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Signal::HandOff { max_unread: 4 }
    };
    let server = serve_connection(
        params,
        &mut rd,
        &mut wr,
        Bytes::new(),
        BoxHttp::new(echo),
        signal,
    );
    let peer = async {
        // Draining with nothing in flight: the connection shuts its write half.
        let mut buf = BytesMut::new();
        let end = io::read_frame(&Bolt, &mut client, &mut buf, 1 << 20).await;
        client.shutdown().await.expect("shutdown");
        end
    };
    let (left, end) = tokio::join!(server, peer);
    assert!(left.is_none(), "not handed over");
    assert!(
        matches!(end, Ok(None)),
        "closed with a FIN, not handed over: {end:?}"
    );
}

/// A call of `p` to `path` with request id `id`, encoded.
fn call_of<P: Protocol>(p: &P, path: &str, id: u64, body: &'static [u8]) -> BytesMut {
    let req = http::Request::post(path).body(()).expect("request");
    let mut frame = p
        .request_from_http(req.into_parts().0, Bytes::from_static(body))
        .expect("call");
    p.set_request_id(&mut frame, id);
    let mut out = BytesMut::new();
    p.encode(&frame, &mut out).expect("encode");
    out
}

#[tokio::test]
async fn a_dubbo_connection_is_handed_off_the_same_way() {
    let slow = tower::service_fn(|_: HttpRequest| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, BoxError>(HttpResponse::new("ok".into()))
    });
    let (options, counters) = (ServerOptions::default(), Counters::default());
    let params = ServeParams {
        protocol: &Dubbo,
        options: &options,
        counters: &counters,
        extensions: http::Extensions::new(),
        idle_timeout: None,
        frame_timeout: None,
        resumed: false,
    };
    let (mut client, conn) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(conn);
    let first = call_of(&Dubbo, "/org.example.Greeter/hello", 1, b"\x05first");
    let second = call_of(&Dubbo, "/org.example.Greeter/hello", 2, b"\x06second");
    let half = second.len() / 2;
    client.write_all(&first).await.expect("write");
    client.write_all(&second[..half]).await.expect("write");
    let signal = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Signal::HandOff {
            max_unread: 1 << 16,
        }
    };
    let unread = serve_connection(
        params,
        &mut rd,
        &mut wr,
        Bytes::new(),
        BoxHttp::new(slow),
        signal,
    )
    .await
    .expect("handed over");
    assert_eq!(&unread[..], &second[..half]);
    let mut buf = BytesMut::new();
    let answer = io::read_frame(&Dubbo, &mut client, &mut buf, 1 << 20)
        .await
        .expect("read")
        .expect("an answer");
    assert_eq!(Dubbo.request_id(&answer), 1);
    assert_eq!(Dubbo.kind(&answer), FrameKind::Response);
    // No go-away (Dubbo's read-only event) before the hand-off.
    assert!(buf.is_empty());
}
