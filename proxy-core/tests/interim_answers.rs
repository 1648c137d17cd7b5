//! Interim (1xx) answers forwarded ahead of the final answer (RFC 9110 15.2), on real
//! sockets: an HTTP/1.1 upstream's `103 Early Hints` reaches HTTP/1.1 and h2c
//! clients (raw, `h2` and curl) while the upstream is still at work, without the
//! upstream connection's own fields; an HTTP/2 upstream's too; an HTTP/1.0 client
//! gets none; the upstream's `100 Continue` is not passed on; a layer sends its own; an
//! upstream flooding them is answered 502.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::HeaderValue;
use proxy_core::{informational::Informational, BoxHttp, HttpRequest, Registry};
use proxy_test_support::{
    client::raw,
    server::TestServer,
    timeout::with_timeout,
    tools,
    upstream::{read_request, spawn_raw, Upstream},
    yaml,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::Notify};

/// What the test upstreams send ahead of their final answer: an unasked-for
/// `100 Continue`, then the hints with a field of the upstream connection's own.
const INTERIMS: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
    HTTP/1.1 103 Early Hints\r\n\
    Link: </app.css>; rel=preload; as=style\r\n\
    Connection: x-upstream-hop\r\n\
    X-Upstream-Hop: 1\r\n\r\n";

/// An HTTP/1.1 upstream sending [`INTERIMS`], then its final answer (`ok`) only once
/// `go` is notified: the client must have had the hints before the answer exists.
fn hinting_h1_upstream(go: Arc<Notify>) -> Upstream {
    spawn_raw(move |mut tcp, stats| {
        let go = go.clone();
        async move {
            while read_request(&mut tcp).await.is_some() {
                stats.hit();
                if tcp.write_all(INTERIMS).await.is_err() {
                    return;
                }
                go.notified().await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tcp.write_all(answer).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// An HTTP/2 upstream sending `103 Early Hints`, then `ok` once `go` is notified.
fn hinting_h2_upstream(go: Arc<Notify>) -> Upstream {
    spawn_raw(move |tcp, stats| {
        let go = go.clone();
        async move {
            let Ok(mut conn) = h2::server::handshake(tcp).await else {
                return;
            };
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                stats.hit();
                let go = go.clone();
                tokio::spawn(async move {
                    let hints = http::Response::builder()
                        .status(103)
                        .header("link", "</app.css>; rel=preload; as=style")
                        .body(())
                        .expect("a 103 head");
                    respond.send_informational(hints).expect("the hints sent");
                    go.notified().await;
                    let head = http::Response::builder()
                        .header("content-length", "2")
                        .body(())
                        .expect("a 200 head");
                    if let Ok(mut body) = respond.send_response(head, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                });
            }
        }
    })
}

fn start(up: &Upstream, cluster_extra: &[&str]) -> TestServer {
    let cfg = yaml::config(
        &[yaml::listener("web", "app", &["protocol: auto"])],
        &[yaml::cluster("app", &[up.addr], cluster_extra)],
    );
    TestServer::start(&cfg, Registry::default())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n";

/// Sends a GET on `client` and reads the answer: the hints first (asserted), then,
/// once `go` lets the upstream answer (when given), the final `200 ok`.
async fn h1_hints_then_answer(client: &mut TcpStream, go: Option<&Notify>) {
    client.write_all(GET).await.expect("send the request");
    let mut got = Vec::new();
    let end = raw::read_until(client, &mut got, b"\r\n\r\n").await;
    // The `100 Continue` was the proxy's to answer: not passed on.
    assert_hints(&String::from_utf8_lossy(&got[..end]));
    if let Some(go) = go {
        go.notify_one();
    }
    raw::read_until(client, &mut got, b"\r\n\r\nok").await;
    let answer = String::from_utf8_lossy(&got[end..]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

/// [`h1_hints_then_answer`] for an h2c client (`h2`) on a connection of its own.
async fn h2c_hints_then_answer(addr: std::net::SocketAddr, go: Option<&Notify>) {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (mut send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://a.test/")
        .body(())
        .expect("a request");
    let (mut answer, _) = send.send_request(req, true).expect("a stream");
    let hints = std::future::poll_fn(|cx| answer.poll_informational(cx))
        .await
        .expect("an interim answer")
        .expect("well-formed");
    assert_eq!(hints.status(), 103);
    assert_eq!(
        hints.headers()["link"],
        HeaderValue::from_static("</app.css>; rel=preload; as=style")
    );
    assert!(hints.headers().get("x-upstream-hop").is_none());
    if let Some(go) = go {
        go.notify_one();
    }
    let resp = answer.await.expect("the answer");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let data = body.data().await.expect("a body chunk").expect("its data");
    assert_eq!(&data[..], b"ok");
    // Closed before the proxy stops, which would wait for it.
    drop((send, body));
    conn.await
        .expect("the connection task")
        .expect("a clean close");
}

/// Asserts that `head` is the forwarded hints: the link kept, the upstream
/// connection's own fields left out.
fn assert_hints(head: &str) {
    assert!(head.starts_with("HTTP/1.1 103 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("link: </app.css>; rel=preload; as=style\r\n"),
        "{head}"
    );
    assert!(!lower.contains("x-upstream-hop"), "{head}");
    assert!(!lower.contains("connection:"), "{head}");
}

#[tokio::test]
async fn early_hints_reach_an_http11_client_before_the_answer_exists() {
    with_timeout(Duration::from_secs(20), async {
        let go = Arc::new(Notify::new());
        let up = hinting_h1_upstream(go.clone());
        let proxy = start(&up, &[]);
        let mut client = TcpStream::connect(proxy.addr("web"))
            .await
            .expect("connect to the proxy");
        // Each request of the connection gets its own hints, then its answer.
        for _ in 0..2 {
            h1_hints_then_answer(&mut client, Some(&go)).await;
        }
        assert_eq!(up.hits(), 2);
    })
    .await;
}

#[tokio::test]
async fn hints_that_come_with_the_answer_go_first() {
    with_timeout(Duration::from_secs(20), async {
        // Hints and answer in one write: read by the proxy together.
        let up = spawn_raw(|mut tcp, stats| async move {
            while read_request(&mut tcp).await.is_some() {
                stats.hit();
                let mut all = INTERIMS.to_vec();
                all.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                if tcp.write_all(&all).await.is_err() {
                    return;
                }
            }
        });
        let proxy = start(&up, &[]);
        let mut client = TcpStream::connect(proxy.addr("web"))
            .await
            .expect("connect to the proxy");
        for _ in 0..3 {
            h1_hints_then_answer(&mut client, None).await;
        }
        h2c_hints_then_answer(proxy.addr("web"), None).await;
    })
    .await;
}

#[tokio::test]
async fn an_upstream_flooding_interim_answers_is_a_bad_answer() {
    with_timeout(Duration::from_secs(20), async {
        let up = spawn_raw(|mut tcp, stats| async move {
            if read_request(&mut tcp).await.is_some() {
                stats.hit();
                let flood = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n".repeat(40);
                let _ = tcp.write_all(&flood).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        let proxy = start(&up, &[]);
        let got = raw::exchange(
            proxy.addr("web"),
            b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let text = String::from_utf8_lossy(&got);
        // Those written before the bound went on; the answer is the proxy's 502.
        let hints = text.matches("HTTP/1.1 103 ").count();
        assert!(hints <= 32, "{hints} interim answers");
        assert!(text.contains("HTTP/1.1 502 "), "{text}");
        assert!(!text.contains("HTTP/1.1 200 "), "{text}");
    })
    .await;
}

#[tokio::test]
async fn an_http10_client_gets_the_final_answer_only() {
    with_timeout(Duration::from_secs(20), async {
        let go = Arc::new(Notify::new());
        // Let through at once: the client must not wait for the 103 to see the 200.
        go.notify_one();
        let up = hinting_h1_upstream(go.clone());
        let proxy = start(&up, &[]);
        let got = raw::exchange(
            proxy.addr("web"),
            b"GET / HTTP/1.0\r\nhost: a.test\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(!text.contains(" 103 ") && !text.contains(" 100 "), "{text}");
        assert!(text.ends_with("ok"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn an_http2_upstreams_hints_reach_an_http11_client() {
    with_timeout(Duration::from_secs(20), async {
        let go = Arc::new(Notify::new());
        let up = hinting_h2_upstream(go.clone());
        let proxy = start(&up, &["protocol: http2"]);
        let mut client = TcpStream::connect(proxy.addr("web"))
            .await
            .expect("connect to the proxy");
        h1_hints_then_answer(&mut client, Some(&go)).await;
    })
    .await;
}

#[tokio::test]
async fn an_h2c_client_gets_the_hints_on_its_stream_before_the_answer() {
    with_timeout(Duration::from_secs(20), async {
        let go = Arc::new(Notify::new());
        let up = hinting_h1_upstream(go.clone());
        let proxy = start(&up, &[]);
        h2c_hints_then_answer(proxy.addr("web"), Some(&go)).await;
    })
    .await;
}

/// curl, verbose: the interim answer's lines, then the final one's.
async fn curl_sees_hints(addr: std::net::SocketAddr, extra: &[&str]) -> Option<String> {
    let url = format!("http://{addr}/");
    let mut args = vec!["-sv", "-o", "/dev/null"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = tools::run("curl", &args, None, Duration::from_secs(10)).await?;
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn curl_sees_early_hints_over_http11_and_h2c() {
    with_timeout(Duration::from_secs(30), async {
        let go = Arc::new(Notify::new());
        let up = hinting_h1_upstream(go.clone());
        let proxy = start(&up, &[]);
        let addr = proxy.addr("web");
        for (extra, hints, answer) in [
            (&[][..], "< HTTP/1.1 103 Early Hints", "< HTTP/1.1 200 OK"),
            (
                &["--http2-prior-knowledge"][..],
                "< HTTP/2 103",
                "< HTTP/2 200",
            ),
        ] {
            // The upstream answers once the hints went (curl waits meanwhile).
            let release = {
                let go = go.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    go.notify_one();
                })
            };
            let Some(log) = curl_sees_hints(addr, extra).await else {
                return;
            };
            release.await.expect("the release task");
            let at_hints = log.find(hints).unwrap_or_else(|| panic!("{log}"));
            let at_answer = log.find(answer).unwrap_or_else(|| panic!("{log}"));
            assert!(at_hints < at_answer, "{log}");
            assert!(
                log.to_ascii_lowercase()
                    .contains("< link: </app.css>; rel=preload; as=style"),
                "{log}"
            );
            assert!(!log.contains("100 Continue"), "{log}");
        }
    })
    .await;
}

/// A registry with `early_hints`: a layer sending its own `103` before the upstream
/// is asked.
fn registry_with_early_hints() -> Registry {
    let mut r = Registry::default();
    r.register_filter("early_hints", |_, _| {
        Ok(Arc::new(|inner: BoxHttp| {
            BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(|req: HttpRequest| {
                        if let Some(to_client) = req.extensions().get::<Informational>() {
                            let hints = http::Response::builder()
                                .status(103)
                                .header("link", "</layer.js>; rel=preload; as=script")
                                .body(())
                                .expect("a 103 head");
                            to_client.send(hints).expect("the hints sent");
                        }
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

#[tokio::test]
async fn a_layer_sends_its_own_hints_ahead_of_the_upstreams() {
    with_timeout(Duration::from_secs(20), async {
        let go = Arc::new(Notify::new());
        let up = hinting_h1_upstream(go.clone());
        let cfg = yaml::config(
            &[yaml::listener(
                "web",
                "app",
                &["http_filters: [{typed: early_hints}]"],
            )],
            &[yaml::cluster("app", &[up.addr], &[])],
        );
        let proxy = TestServer::start(&cfg, registry_with_early_hints());
        let mut client = TcpStream::connect(proxy.addr("web"))
            .await
            .expect("connect to the proxy");
        client.write_all(GET).await.expect("send the request");
        let mut got = Vec::new();
        let end = raw::read_until(&mut client, &mut got, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 103 "), "{head}");
        assert!(head.contains("</layer.js>"), "{head}");
        // Then the upstream's, then the answer.
        let mut got = got[end..].to_vec();
        let end = raw::read_until(&mut client, &mut got, b"\r\n\r\n").await;
        assert_hints(&String::from_utf8_lossy(&got[..end]));
        go.notify_one();
        raw::read_until(&mut client, &mut got, b"\r\n\r\nok").await;
        assert!(String::from_utf8_lossy(&got[end..]).starts_with("HTTP/1.1 200 "));
    })
    .await;
}
