//! Large bodies are streamed, never buffered: a 1 GiB upload reaches the counting sink
//! whole while the sidecar's peak RSS stays small; a 64 MiB download arrives whole;
//! `Expect: 100-continue` works.

use crate::common;

use std::{
    convert::Infallible,
    io,
    path::Path,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use proxy_test_support::{
    temp::TempDir,
    tools::{self, Feeder},
    upstream::{full, response},
    with_timeout, Upstream,
};
use tokio::io::AsyncWriteExt;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Peak RSS the sidecar may reach while streaming 1 GiB.
const RSS_CEILING: u64 = 64 * MIB;

/// Reads and counts request bodies (streamed, never buffered: [`Upstream::bytes`])
/// and answers with the count as text; `GET /download/N` streams N bytes instead
/// (with a content-length), `GET /download-chunked/N` without one (chunked).
fn counting_sink() -> Upstream {
    Upstream::hyper(|req, stats| async move {
        if let Some(n) = req.uri().path().strip_prefix("/download/") {
            let n: u64 = n.parse().unwrap_or(0);
            return Response::builder()
                .header("content-length", n.to_string())
                .body(BodyExt::boxed(Repeat {
                    remaining: n,
                    chunk: Bytes::from(vec![b'd'; 64 * 1024]),
                    length_known: true,
                }))
                .expect("response");
        }
        if let Some(n) = req.uri().path().strip_prefix("/download-chunked/") {
            // No length: HTTP/1.1 sends it chunked, in 16 KiB chunks.
            let n: u64 = n.parse().unwrap_or(0);
            return Response::new(BodyExt::boxed(Repeat {
                remaining: n,
                chunk: Bytes::from(vec![b'c'; 16 * 1024]),
                length_known: false,
            }));
        }
        let mut body = req.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        total += d.len() as u64;
                        stats.add_bytes(d.len() as u64);
                    }
                }
                Err(e) => {
                    return response(
                        StatusCode::BAD_REQUEST.as_u16(),
                        format!("sink: body error after {total} bytes: {e}"),
                    )
                }
            }
        }
        Response::new(full(total.to_string()))
    })
}

/// A body of `remaining` bytes produced chunk by chunk, never held whole.
struct Repeat {
    remaining: u64,
    chunk: Bytes,
    /// Whether `size_hint` tells the length (else the body is sent chunked).
    length_known: bool,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.length_known {
            hyper::body::SizeHint::with_exact(self.remaining)
        } else {
            hyper::body::SizeHint::default()
        }
    }
}

/// A stdin feeder writing `total` bytes of `b'u'` in 64 KiB chunks, then closing.
fn generator(total: u64) -> Feeder {
    Box::new(move |mut pipe| {
        tokio::spawn(async move {
            let chunk = vec![b'u'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if pipe.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = pipe.shutdown().await;
        })
    })
}

/// Creates a sparse file of `len` bytes (reads as zeros, uses no disk).
fn sparse_file(path: &Path, len: u64) -> io::Result<()> {
    let f = std::fs::File::create(path)?;
    f.set_len(len)
}

async fn sink_setup() -> (Sidecar, Upstream, String) {
    let sink = counting_sink();
    let mut cfg = ConfigBuilder::new()
        .routes(vec![route("sink", "/", "sink", "")])
        .cluster(cluster("sink", sink.addr, ""));
    let sc = Sidecar::start_with(&mut cfg).await;
    (sc, sink, format!("http://{}", cfg.listen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_1gib_streams_with_bounded_memory() {
    if !tools::installed("curl") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(Duration::from_secs(90), async {
        let (sc, sink, base) = sink_setup().await;
        let dir = TempDir::new("upload");
        let file = dir.join("1gib.bin");
        sparse_file(&file, GIB).expect("sparse file");
        let file = file.to_string_lossy().into_owned();

        let started = Instant::now();
        let out = tools::run(
            "curl",
            &[
                "-sS",
                "-X",
                "POST",
                "-T",
                &file,
                "-H",
                "Expect:",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                &format!("{base}/upload"),
            ],
            None,
            Duration::from_secs(75),
        )
        .await
        .expect("curl is installed");
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        assert_eq!(code, "200", "upload status; body {body:?}");
        assert_eq!(body, GIB.to_string(), "the sink reports the bytes it read");
        assert_eq!(sink.bytes(), GIB, "the sink counted exactly 1 GiB");
        let peak = sc.peak_rss_bytes();
        eprintln!(
            "1 GiB upload in {took:?}; sidecar VmHWM {} KiB",
            peak / 1024
        );
        assert!(
            peak < RSS_CEILING,
            "sidecar peak RSS {} MiB >= {} MiB: the body was buffered",
            peak / MIB,
            RSS_CEILING / MIB
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_chunked_from_stdin_streams() {
    if !tools::installed("curl") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(Duration::from_secs(90), async {
        let (sc, sink, base) = sink_setup().await;
        let total = 256 * MIB;
        // `-T -` reads stdin as it comes and sends it chunked (no length known).
        let out = tools::run(
            "curl",
            &[
                "-sS",
                "-X",
                "POST",
                "-T",
                "-",
                "-H",
                "Expect:",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                &format!("{base}/chunked"),
            ],
            Some(generator(total)),
            Duration::from_secs(75),
        )
        .await
        .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        assert_eq!(code, "200", "chunked upload status; body {body:?}");
        assert_eq!(sink.bytes(), total, "the sink counted every chunked byte");
        let peak = sc.peak_rss_bytes();
        assert!(peak < RSS_CEILING, "sidecar peak RSS {} MiB", peak / MIB);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_64mib_arrives_whole() {
    if !tools::installed("curl") {
        return;
    }
    let _heavy = heavy_test_lock().await;
    with_timeout(Duration::from_secs(60), async {
        let (sc, _sink, base) = sink_setup().await;
        let n = 64 * MIB;
        let cases = [
            ("--http1.1", "download"),
            ("--http2-prior-knowledge", "download"),
            ("--http1.1", "download-chunked"),
            ("--http2-prior-knowledge", "download-chunked"),
        ];
        for (flag, kind) in cases {
            let out = tools::run(
                "curl",
                &[
                    "-sS",
                    flag,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                    &format!("{base}/{kind}/{n}"),
                ],
                None,
                Duration::from_secs(45),
            )
            .await
            .expect("curl is installed");
            assert!(
                out.status.success(),
                "curl {flag} /{kind}/ failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                text,
                format!("200 {n}"),
                "download status and byte count ({flag} /{kind}/)"
            );
        }
        let peak = sc.peak_rss_bytes();
        assert!(
            peak < RSS_CEILING,
            "sidecar peak RSS {} MiB after 4 x 64 MiB downloads",
            peak / MIB
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    if !tools::installed("curl") {
        return;
    }
    with_timeout(Duration::from_secs(60), async {
        let (_sc, sink, base) = sink_setup().await;
        let dir = TempDir::new("expect");
        let file = dir.join("body.bin");
        std::fs::write(&file, vec![b'e'; 2 * MIB as usize]).expect("write body");
        let data = format!("@{}", file.to_string_lossy());
        let started = Instant::now();
        // curl waits up to --expect100-timeout for the 100 before sending anyway: with a
        // long timeout, a quick answer proves the 100 Continue came through.
        let r = curl(
            &[
                "-X",
                "POST",
                "--data-binary",
                &data,
                "-H",
                "Expect: 100-continue",
                "--expect100-timeout",
                "10",
                &format!("{base}/expect"),
            ],
            Duration::from_secs(30),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r.exit_code, 0, "{}", r.stderr);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.interim, vec![100], "curl saw 100 Continue");
        assert_eq!(r.text(), (2 * MIB).to_string());
        assert_eq!(sink.bytes(), 2 * MIB);
        assert!(
            took < Duration::from_secs(5),
            "100 Continue was not relayed promptly: {took:?}"
        );
    })
    .await;
}
