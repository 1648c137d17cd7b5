//! HTTP/3 termination on real sockets: the h3 crate's client over h3-quinn talks to
//! an `H3Listener` on 127.0.0.1 whose stack is proxy-core's router and proxy to an
//! HTTP/1.1 upstream (proxy-test-support's echo), or a small stack of the test's.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::{
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Buf, Bytes};
use futures_util::future::join_all;
use h3_support::{finish, proxy_stack, proxy_to_echo, request, Client, Running, Tls, TEST_TIMEOUT};
use http::HeaderMap;
use proxy_core::{BoxError, BoxHttp, HttpListener, HttpRequest, HttpResponse};
use proxy_quic::{
    h3::{AltSvcLayer, H3Listener},
    Decoder, DecoderConfig, NonceSpace, QuicLbConfig, QuicLbServer,
};
use proxy_test_support::{upstream::Echoed, with_timeout, Upstream};
use tower::ServiceBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_through_the_router_and_proxy_to_an_http1_upstream() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (up, server) = proxy_to_echo(&tls);
        let mut client = Client::connect(server.addr, tls.client.clone()).await;

        let a = client.get(server.addr, "/hello?x=1").await.unwrap();
        assert_eq!(a.status(), 200);
        assert_eq!(a.header("x-upstream"), Some("e"));
        let e = Echoed::parse(&a.body);
        assert_eq!((e.method.as_str(), e.uri.as_str()), ("GET", "/hello?x=1"));
        assert_eq!(e.version, "HTTP/1.1");
        assert_eq!(
            e.header("host"),
            Some(&*format!("localhost:{}", server.addr.port()))
        );
        // The client's address reached the stack as the TCP listeners give it.
        assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(e.header("x-forwarded-proto"), Some("https"));
        // No body and no declared length. When the FIN comes with the HEADERS the
        // upstream gets no body at all, not a chunked empty one; this client sends
        // its FIN in a call of its own, which on a busy machine can leave in a later
        // packet, and then the proxy cannot yet know the body is empty.
        assert!(
            matches!(e.header("transfer-encoding"), None | Some("chunked")),
            "{e:?}"
        );
        assert_eq!(e.body, "");
        assert_eq!(e.header("content-length"), None);

        // A body in three DATA frames with its length declared...
        let mut req = request("POST", server.addr, "/post");
        req.headers_mut()
            .insert("content-length", "15".parse().unwrap());
        let a = client
            .request(req, &["hello", ", h3 ", "world"])
            .await
            .unwrap();
        assert_eq!(a.status(), 200);
        let e = Echoed::parse(&a.body);
        assert_eq!(
            (e.method.as_str(), e.body.as_str()),
            ("POST", "hello, h3 world")
        );
        assert_eq!(e.header("content-length"), Some("15"));
        // ... and without: chunked to the HTTP/1.1 upstream.
        let req = request("PUT", server.addr, "/put");
        let a = client.request(req, &["abc", "def"]).await.unwrap();
        let e = Echoed::parse(&a.body);
        assert_eq!((e.method.as_str(), e.body.as_str()), ("PUT", "abcdef"));
        assert_eq!(e.header("transfer-encoding"), Some("chunked"));

        assert_eq!(up.hits(), 3);
        // A request task ends just after its stream does.
        let idle = || server.stats().requests_active == 0;
        assert!(proxy_test_support::eventually(Duration::from_secs(5), idle).await);
        let stats = server.stats();
        assert_eq!((stats.handshakes, stats.connections_active), (1, 1));
        assert_eq!(stats.requests, 3);
        assert_eq!((stats.malformed, stats.stack_errors), (0, 0));
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    with_timeout(TEST_TIMEOUT, async {
        let up = Upstream::echo("e");
        let tls = Tls::new();
        // More requests than the stream limit: the client waits for stream credit.
        let builder = H3Listener::builder("h3", tls.server()).max_concurrent_streams(16);
        let server = Running::start(builder, proxy_stack(up.addr));
        let client = Client::connect(server.addr, tls.client.clone()).await;
        let addr = server.addr;
        let answers = join_all((0..64).map(|i| {
            let mut send = client.send.clone();
            async move {
                let mut req = request("GET", addr, &format!("/n/{i}"));
                req.headers_mut().insert(
                    "x-echo-delay-ms",
                    ((i % 4) * 20).to_string().parse().unwrap(),
                );
                let mut stream = send.send_request(req).await?;
                finish(&mut stream).await?;
                let head = stream.recv_response().await?;
                let mut body = Vec::new();
                while let Some(mut chunk) = stream.recv_data().await? {
                    body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
                }
                Ok::<_, BoxError>((i, head.status().as_u16(), body))
            }
        }))
        .await;
        for answer in answers {
            let (i, status, body) = answer.unwrap();
            assert_eq!(status, 200);
            assert_eq!(Echoed::parse(&body).uri, format!("/n/{i}"));
        }
        assert_eq!(up.hits(), 64);
        server.stop().await.unwrap();
    })
    .await;
}

/// A stack that answers with the request's own body (and trailers), as it arrives.
fn echo_back() -> BoxHttp {
    BoxHttp::new(tower::service_fn(|req: HttpRequest| async move {
        let mut resp = HttpResponse::new(req.into_body());
        resp.headers_mut()
            .insert("connection", "keep-alive".parse().unwrap());
        Ok::<_, BoxError>(resp)
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_with_trailers() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let server = Running::start(H3Listener::builder("h3", tls.server()), echo_back());
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        let mut stream = client
            .send
            .send_request(request("POST", server.addr, "/echo"))
            .await
            .unwrap();
        // Each chunk comes back before the next is sent: nothing waits for the whole
        // body, in either direction.
        stream
            .send_data(Bytes::from_static(b"ping 1"))
            .await
            .unwrap();
        let head = stream.recv_response().await.unwrap();
        assert_eq!(head.status(), 200);
        // Connection-specific fields never reach an HTTP/3 client.
        assert!(head.headers().get("connection").is_none());
        for n in 1..=3 {
            let mut got = stream.recv_data().await.unwrap().unwrap();
            assert_eq!(got.copy_to_bytes(got.remaining()), format!("ping {n}"));
            if n < 3 {
                let next = Bytes::from(format!("ping {}", n + 1));
                stream.send_data(next).await.unwrap();
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        stream.send_trailers(trailers).await.unwrap();
        stream.finish().await.unwrap();
        assert!(stream.recv_data().await.unwrap().is_none());
        let trailers = stream.recv_trailers().await.unwrap().unwrap();
        assert_eq!(trailers["x-checksum"], "42");
        drop(stream);
        drop(client);
        server.stop().await.unwrap();
    })
    .await;
}

/// A stack that answers without reading the request body.
fn answer_early() -> BoxHttp {
    BoxHttp::new(tower::service_fn(|req: HttpRequest| async move {
        drop(req);
        Ok::<_, BoxError>(HttpResponse::new(proxy_core::Body::from("early")))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_whole_body_arrives_whole_and_stops_the_body() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let server = Running::start(H3Listener::builder("h3", tls.server()), answer_early());
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        let mut stream = client
            .send
            .send_request(request("POST", server.addr, "/upload"))
            .await
            .unwrap();
        stream
            .send_data(Bytes::from_static(b"first part"))
            .await
            .unwrap();
        // The whole answer comes although the body has not ended.
        let head = stream.recv_response().await.unwrap();
        assert_eq!(head.status(), 200);
        let mut got = stream.recv_data().await.unwrap().unwrap();
        assert_eq!(got.copy_to_bytes(got.remaining()), "early");
        assert!(stream.recv_data().await.unwrap().is_none());
        // The server stopped reading the body: the client is asked to stop sending
        // (RFC 9114 section 4.1), and nothing is reset on the answer's side.
        loop {
            match stream.send_data(Bytes::from_static(b"more")).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(h3::error::StreamError::RemoteTerminate { .. }) => break,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        drop(stream);
        drop(client);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_errors_are_answered_and_malformed_requests_refused() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        // An upstream that refuses connections: the proxy's error, answered 5xx.
        let closed = proxy_test_support::closed_port();
        let server = Running::start(H3Listener::builder("h3", tls.server()), proxy_stack(closed));
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        let a = client.get(server.addr, "/").await.unwrap();
        assert!((502..=503).contains(&a.status()), "{}", a.status());
        assert!(a.header("x-proxy-error").is_some(), "{:?}", a.head);

        // A connection-specific field: the stream is refused with H3_MESSAGE_ERROR
        // (RFC 9114 section 4.2); the connection goes on.
        let mut req = request("GET", server.addr, "/");
        req.headers_mut()
            .insert("connection", "close".parse().unwrap());
        let err = client.request(req, &[]).await.unwrap_err();
        assert!(format!("{err:?}").contains("H3_MESSAGE_ERROR"), "{err:?}");
        let a = client.get(server.addr, "/again").await.unwrap();
        assert!((502..=503).contains(&a.status()));
        // The proxy answers its own errors: they are not errors of the stack.
        let stats = server.stats();
        assert_eq!(
            (stats.requests, stats.malformed, stats.stack_errors),
            (2, 1, 0)
        );
        server.stop().await.unwrap();

        // A body shorter than its content-length, read by the stack: the answer that
        // streams it back is reset with H3_MESSAGE_ERROR.
        let server = Running::start(H3Listener::builder("h3", tls.server()), echo_back());
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        let mut req = request("POST", server.addr, "/");
        req.headers_mut()
            .insert("content-length", "10".parse().unwrap());
        let err = client.request(req, &["abc"]).await.unwrap_err();
        assert!(format!("{err:?}").contains("H3_MESSAGE_ERROR"), "{err:?}");
        let mut req = request("POST", server.addr, "/");
        req.headers_mut()
            .insert("content-length", "2".parse().unwrap());
        let err = client.request(req, &["abc"]).await.unwrap_err();
        assert!(format!("{err:?}").contains("H3_MESSAGE_ERROR"), "{err:?}");
        let a = client
            .request(request("POST", server.addr, "/"), &["fine"])
            .await
            .unwrap();
        assert_eq!(a.body, "fine");
        let stats = server.stats();
        assert_eq!((stats.malformed, stats.responses_reset), (2, 2));
        server.stop().await.unwrap();

        // A stack that fails: 500.
        let failing = BoxHttp::new(tower::service_fn(|_req: HttpRequest| async {
            Err::<HttpResponse, BoxError>("boom".into())
        }));
        let server = Running::start(H3Listener::builder("h3", tls.server()), failing);
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        assert_eq!(client.get(server.addr, "/").await.unwrap().status(), 500);
        assert_eq!(server.stats().stack_errors, 1);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_go_on_one_line_and_a_second_host_is_refused() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (up, server) = proxy_to_echo(&tls);
        let mut client = Client::connect(server.addr, tls.client.clone()).await;
        // One field per cookie, as HTTP/3 clients may send them: one line for an
        // HTTP/1.1 upstream, joined with `; ` (RFC 9114 section 4.2.1).
        let mut req = request("GET", server.addr, "/cookies");
        for c in ["a=1", "b=2"] {
            req.headers_mut().append("cookie", c.parse().unwrap());
        }
        let a = client.request(req, &[]).await.unwrap();
        assert_eq!(a.status(), 200);
        assert_eq!(Echoed::parse(&a.body).header_all("cookie"), ["a=1; b=2"]);

        // A second Host, even one that names `:authority` again, is malformed: an
        // HTTP/1.1 upstream could read either.
        let mut req = request("GET", server.addr, "/hosts");
        let authority = format!("localhost:{}", server.addr.port());
        for _ in 0..2 {
            req.headers_mut().append("host", authority.parse().unwrap());
        }
        let err = client.request(req, &[]).await.unwrap_err();
        assert!(format!("{err:?}").contains("H3_MESSAGE_ERROR"), "{err:?}");
        assert_eq!(up.hits(), 1);
        assert_eq!(server.stats().malformed, 1);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_goaway_and_lets_requests_finish() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (up, server) = proxy_to_echo(&tls);
        let addr = server.addr;
        let mut client = Client::connect(addr, tls.client.clone()).await;
        let mut slow = request("GET", addr, "/slow");
        slow.headers_mut()
            .insert("x-echo-delay-ms", "400".parse().unwrap());
        let mut send = client.send.clone();
        let in_flight = tokio::spawn(async move {
            let mut stream = send.send_request(slow).await?;
            finish(&mut stream).await?;
            let head = stream.recv_response().await?;
            let mut body = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await? {
                body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            Ok::<_, BoxError>((head.status().as_u16(), body))
        });
        // The upstream records the request before its delay.
        assert!(proxy_test_support::eventually(Duration::from_secs(5), || up.hits() == 1).await);
        let started_at = tokio::time::Instant::now();
        let served = server.stop();
        let (status, body) = in_flight.await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert_eq!(Echoed::parse(&body).uri, "/slow");
        served.await.unwrap();
        assert!(started_at.elapsed() < Duration::from_secs(5));
        // The connection is gone and no new one is accepted.
        assert!(client.get(addr, "/late").await.is_err());
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = endpoint
            .connect_with(tls.client.clone(), addr, "localhost")
            .unwrap();
        let connected = tokio::time::timeout(Duration::from_secs(1), connecting).await;
        assert!(
            !matches!(connected, Ok(Ok(_))),
            "a connection after shutdown"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_and_refuses_new_requests() {
    with_timeout(TEST_TIMEOUT, async {
        let up = Upstream::echo("e");
        let tls = Tls::new();
        let builder =
            H3Listener::builder("h3", tls.server()).drain_timeout(Duration::from_millis(300));
        let server = Running::start(builder, proxy_stack(up.addr));
        let addr = server.addr;
        let mut client = Client::connect(addr, tls.client.clone()).await;
        // A request that would take longer than the drain allows.
        let mut stuck = request("GET", addr, "/stuck");
        stuck
            .headers_mut()
            .insert("x-echo-delay-ms", "4000".parse().unwrap());
        let mut send = client.send.clone();
        let in_flight = tokio::spawn(async move {
            let mut stream = send.send_request(stuck).await?;
            finish(&mut stream).await?;
            stream.recv_response().await?;
            Ok::<_, BoxError>(())
        });
        assert!(proxy_test_support::eventually(Duration::from_secs(5), || up.hits() == 1).await);
        let started_at = tokio::time::Instant::now();
        let stats = server.stats_handle();
        let served = server.stop();
        // After the GOAWAY, a new request on the connection is refused.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(client.get(addr, "/after-goaway").await.is_err());
        served.await.unwrap();
        assert!(
            started_at.elapsed() < Duration::from_secs(3),
            "{:?}",
            started_at.elapsed()
        );
        assert!(
            in_flight.await.unwrap().is_err(),
            "the stuck request was answered"
        );
        assert_eq!(up.hits(), 1);
        let stats = stats.snapshot();
        assert_eq!(stats.goaways, 1);
        assert_eq!((stats.connections_active, stats.requests_active), (0, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listeners_advertise_the_h3_listener_with_alt_svc() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (up, h3) = proxy_to_echo(&tls);
        let tcp_stack = BoxHttp::new(
            ServiceBuilder::new()
                .layer(AltSvcLayer::new(h3.addr.port(), Duration::from_secs(3600)))
                .service(proxy_stack(up.addr)),
        );
        let tcp = HttpListener::builder("tcp")
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let tcp_addr = tcp.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tcp_task = tokio::spawn(tcp.serve(tcp_stack, async {
            let _ = stopped.await;
        }));
        let r = proxy_test_support::client::get(tcp_addr, "/", &[]).await;
        let alt_svc = r.header("alt-svc").unwrap().to_owned();
        assert_eq!(alt_svc, format!("h3=\":{}\"; ma=3600", h3.addr.port()));
        // The advertised port answers HTTP/3 for the same names.
        let mut client = Client::connect(h3.addr, tls.client.clone()).await;
        assert_eq!(client.get(h3.addr, "/").await.unwrap().status(), 200);
        let _ = stop.send(());
        tcp_task.await.unwrap();
        h3.stop().await.unwrap();
    })
    .await;
}

const KEY: &str = "8f95f09245765f80256934e50c66207f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_lb_connection_ids_decode_to_the_server_id() {
    with_timeout(TEST_TIMEOUT, async {
        let server_config: QuicLbConfig = serde_json::from_str(&format!(
            r#"{{"config_id": 1, "server_id": "a1b2c3", "nonce_length": 8, "cid_key": "{KEY}"}}"#
        ))
        .unwrap();
        let lb_config: DecoderConfig = serde_json::from_str(&format!(
            r#"{{"configs": [{{"config_id": 1, "server_id_length": 3, "nonce_length": 8,
                "cid_key": "{KEY}"}}]}}"#
        ))
        .unwrap();
        let decoder = Decoder::try_from(&lb_config).unwrap();
        let quic_lb = QuicLbServer::try_from(&server_config).unwrap();
        let cid_len = quic_lb.format().cid_len();
        let generator = quic_lb.generator(NonceSpace::WHOLE).unwrap();

        let up = Upstream::echo("e");
        let tls = Tls::new();
        let builder = H3Listener::builder("h3", tls.server()).cid_generator(generator);
        let server = Running::start(builder, proxy_stack(up.addr));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let front = relay(server.addr, cid_len, seen.clone()).await;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            StdUdpSocket::bind("127.0.0.1:0").unwrap(),
            Arc::new(quinn::TokioRuntime),
        )
        .unwrap();
        let mut client = Client::connect_from(endpoint, front, tls.client.clone()).await;
        for i in 0..3 {
            let a = client.get(front, &format!("/{i}")).await.unwrap();
            assert_eq!(a.status(), 200);
        }
        let seen = seen.lock().unwrap().clone();
        let short: Vec<_> = seen.iter().filter(|(long, _)| !long).collect();
        assert!(!short.is_empty(), "no 1-RTT packets seen");
        for (_, cid) in short {
            assert_eq!(
                decoder.server_id(cid),
                Some(quic_lb.server_id()),
                "connection ID {cid:02x?} of a 1-RTT packet"
            );
        }
        drop(client);
        server.stop().await.unwrap();
    })
    .await;
}

/// The (long header?, destination connection ID) of every client packet.
type Seen = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// The destination connection ID of a client packet: a long header says its length,
/// a short header's is the server's length, `cid_len`.
fn dcid(packet: &[u8], cid_len: usize) -> Option<(bool, Vec<u8>)> {
    let first = *packet.first()?;
    if first & 0x80 != 0 {
        let len = usize::from(*packet.get(5)?);
        Some((true, packet.get(6..6 + len)?.to_vec()))
    } else {
        Some((false, packet.get(1..1 + cid_len)?.to_vec()))
    }
}

/// Relays datagrams between one client and `server` (the load balancer's seat) and
/// records every client packet's destination connection ID.
async fn relay(server: SocketAddr, cid_len: usize, seen: Seen) -> SocketAddr {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client = None;
        let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            tokio::select! {
                r = front.recv_from(&mut up) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    if let Some(d) = dcid(&up[..n], cid_len) {
                        seen.lock().unwrap().push(d);
                    }
                    let _ = back.send(&up[..n]).await;
                }
                r = back.recv(&mut down) => {
                    let Ok(n) = r else { return };
                    if let Some(to) = client {
                        let _ = front.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    addr
}
