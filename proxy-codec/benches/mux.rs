//! Cost per call through the multiplexing machinery without sockets: a Bolt client
//! pipelines 100 calls on one in-memory connection into `RpcServer`, whose request
//! service sends each through a pooled `MuxClient` to an in-memory Bolt upstream
//! that echoes. Measures the codec, mapping and mux work of a proxied call.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    config::{ServerOptions, UpstreamOptions},
    Bolt, Protocol, RpcServer, RpcUpstream,
};
use proxy_core::{BoxHttp, Connection, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const BATCH: u32 = 100;

fn call(id: u32) -> BoltFrame {
    BoltFrame {
        version: BoltVersion::V1,
        rpc_type: bolt::TYPE_REQUEST,
        cmd_code: bolt::CMD_REQUEST,
        ver2: 1,
        request_id: id,
        codec: bolt::CODEC_HESSIAN2,
        timeout: 3000,
        status: 0,
        class_name: Bytes::from_static(bolt::SOFA_REQUEST.as_bytes()),
        header: Bolt::header_map([
            ("sofa_head_target_service", Some("com.example.Echo:1.0")),
            ("sofa_head_method_name", Some("echo")),
        ]),
        content: Bytes::from(vec![b'x'; 512]),
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> Option<BoltFrame> {
    loop {
        if let Some(n) = Bolt.frame_length(buf).unwrap() {
            if buf.len() as u64 >= n {
                return Some(Bolt.decode(buf.split_to(n as usize).freeze()).unwrap());
            }
        }
        if r.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// An in-memory upstream connection that answers every request with its content.
fn upstream_stream() -> Stream {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        while let Some(f) = read_frame(&mut rd, &mut buf).await {
            let answer = BoltFrame {
                rpc_type: bolt::TYPE_RESPONSE,
                cmd_code: bolt::CMD_RESPONSE,
                class_name: Bytes::from_static(bolt::SOFA_RESPONSE.as_bytes()),
                header: Bytes::new(),
                ..f
            };
            out.clear();
            Bolt.encode(&answer, &mut out).unwrap();
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    Stream::Boxed(Box::new(ours))
}

fn mux(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(proxy_codec::metrics::CodecMetrics::default());
    let (mut client, batch) = rt.block_on(async {
        let upstream = RpcUpstream::new(Bolt, UpstreamOptions::default())
            .unwrap()
            .with_metrics(metrics.clone());
        // The pooled client is the request stack: a tower service of HTTP requests.
        let service = BoxHttp::new(upstream.client(|| async { Ok(upstream_stream()) }));
        let (client, server) = tokio::io::duplex(1 << 20);
        let srv = RpcServer::new(Bolt, ServerOptions::default())
            .unwrap()
            .with_metrics(metrics.clone());
        tokio::spawn(async move {
            let conn = Connection {
                stream: Stream::Boxed(Box::new(server)),
                peer: None,
                listener: "bench".into(),
                secure: false,
                extensions: http::Extensions::new(),
            };
            srv.serve(conn, Bytes::new(), service, std::future::pending())
                .await;
        });
        let mut batch = BytesMut::new();
        for id in 0..BATCH {
            Bolt.encode(&call(id), &mut batch).unwrap();
        }
        (client, batch.freeze())
    });
    let mut g = c.benchmark_group("mux_bolt_proxied_call");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function("pipelined_100", |b| {
        let mut buf = BytesMut::new();
        b.iter(|| {
            rt.block_on(async {
                client.write_all(&batch).await.unwrap();
                for _ in 0..BATCH {
                    read_frame(&mut client, &mut buf).await.unwrap();
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, mux);
criterion_main!(benches);
