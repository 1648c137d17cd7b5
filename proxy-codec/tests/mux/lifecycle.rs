//! A served connection's life: idle and slow peers closed, a drain finishing the
//! requests in flight, a peer that never reads cut off.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use proxy_codec::{
    bolt::{self, BoltVersion},
    config::ServerOptions,
    Bolt, RpcServer,
};
use proxy_core::{Connection, Stream};
use tokio::{io::AsyncWriteExt, time::timeout};

use super::{echo_service, heartbeat, read_frame, request, serve, wire, LIMIT};

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    timeout(LIMIT, async {
        let opts = ServerOptions {
            idle_timeout: Some(Duration::from_millis(150)),
            frame_timeout: Some(Duration::from_millis(150)),
            ..ServerOptions::default()
        };
        // Idle: nothing sent at all.
        let mut c = serve(
            Bolt,
            opts.clone(),
            echo_service(Arc::default()),
            Arc::default(),
        );
        let started = std::time::Instant::now();
        assert!(read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Busy but answered, then idle: the answer comes, then the close.
        let mut c = serve(
            Bolt,
            opts.clone(),
            echo_service(Arc::default()),
            Arc::default(),
        );
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 1, bolt::TYPE_REQUEST, "300:slow")],
        ))
        .await
        .unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(
            read_frame(&Bolt, &mut c, &mut buf)
                .await
                .unwrap()
                .request_id,
            1
        );
        assert!(read_frame(&Bolt, &mut c, &mut buf).await.is_none());
        // Slow: half a frame, then nothing.
        let mut c = serve(Bolt, opts, echo_service(Arc::default()), Arc::default());
        let frame = wire(
            &Bolt,
            &[request(BoltVersion::V1, 2, bolt::TYPE_REQUEST, "0:x")],
        );
        c.write_all(&frame[..frame.len() / 2]).await.unwrap();
        let started = std::time::Instant::now();
        assert!(read_frame(&Bolt, &mut c, &mut BytesMut::new())
            .await
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drain_finishes_requests_in_flight_then_closes() {
    timeout(LIMIT, async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let srv = RpcServer::new(Bolt, ServerOptions::default()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = echo_service(calls.clone());
        let task = tokio::spawn(async move {
            let conn = Connection {
                stream: Stream::Boxed(Box::new(server)),
                peer: None,
                listener: "test".into(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            srv.serve(conn, Bytes::new(), svc, async move {
                let _ = rx.await;
            })
            .await;
        });
        let mut c = client;
        c.write_all(&wire(
            &Bolt,
            &[request(BoltVersion::V1, 1, bolt::TYPE_REQUEST, "200:slow")],
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Sent after the drain: refused at once, before the call in flight ends.
        let _ = c
            .write_all(&wire(
                &Bolt,
                &[request(BoltVersion::V1, 2, bolt::TYPE_REQUEST, "0:late")],
            ))
            .await;
        let mut buf = BytesMut::new();
        let first = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(
            (first.request_id, first.status),
            (2, bolt::status::SERVER_THREADPOOL_BUSY)
        );
        let second = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(
            (second.request_id, second.status),
            (1, bolt::status::SUCCESS)
        );
        assert!(read_frame(&Bolt, &mut c, &mut buf).await.is_none());
        task.await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_peer_that_never_reads_its_answers_is_cut_off() {
    timeout(LIMIT, async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let opts = ServerOptions {
            frame_timeout: Some(Duration::from_millis(200)),
            ..ServerOptions::default()
        };
        let srv = RpcServer::new(Bolt, opts).unwrap();
        let task = tokio::spawn(async move {
            let conn = Connection {
                stream: Stream::Boxed(Box::new(server)),
                peer: None,
                listener: "test".into(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            srv.serve(
                conn,
                Bytes::new(),
                echo_service(Arc::default()),
                std::future::pending(),
            )
            .await;
        });
        // Heartbeats whose answers pile up unread: the server stops reading at its
        // write high-water mark and closes once writing stalls past frame_timeout.
        let (_rd, mut wr) = tokio::io::split(client);
        let pings: Vec<_> = (0..100_000).map(heartbeat).collect();
        let bytes = wire(&Bolt, &pings);
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
        });
        task.await.unwrap();
    })
    .await
    .unwrap();
}
