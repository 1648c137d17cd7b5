//! HTTP/1.1 framing rules on real sockets (RFC 9112): header names a lenient upstream
//! could read as a framing field never reach it, the underscore policy, chunk
//! extensions, chunk-size lines and trailer sections checked to the grammar and
//! their bounds (a 400 that names what was wrong), transfer codings other
//! than `chunked` refused, an answer framed both ways read as chunked and its
//! connection dropped, request targets and hosts held to their grammar, and an
//! upgrade passed on only when the client asked for it (never to `h2c`), and the
//! cookies of an HTTP/2 request joined on one line for an HTTP/1.1 upstream, whose
//! `Host` is the request's one valid authority.

use std::time::Duration;

use bytes::Bytes;
use proxy_core::Registry;
use proxy_test_support::{
    client::{self, raw},
    server::TestServer,
    timeout::with_timeout,
    upstream::Upstream,
    yaml,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(up: &Upstream, policy: Option<&str>) -> TestServer {
    let limits = policy.map(|p| format!("limits: {{ headers_with_underscores: {p} }}"));
    let extra: Vec<&str> = limits.iter().map(String::as_str).collect();
    let cfg = yaml::config(
        &[yaml::listener("web", "app", &extra)],
        &[yaml::cluster("app", &[up.addr], &[])],
    );
    TestServer::start(&cfg, Registry::default())
}

/// Sends `head` (and `body`) on a fresh connection; the whole answer as text.
async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    String::from_utf8_lossy(&raw::exchange(addr, bytes, Duration::from_millis(500)).await)
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_lookalike_names_are_refused_and_never_forwarded() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        for policy in [None, Some("forward"), Some("reject")] {
            let server = start(&up, policy);
            let addr = server.addr("web");
            for name in ["transfer_encoding", "Content_Length", "HOST", "Transfer_Encoding"] {
                let req = format!(
                    "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n{name}: chunked\r\nconnection: close\r\n\r\nhello"
                );
                let answer = send(addr, req.as_bytes()).await;
                if name == "HOST" {
                    // A second Host (names are case-insensitive): refused as such.
                    assert!(answer.starts_with("HTTP/1.1 400"), "{policy:?}: {answer}");
                    continue;
                }
                assert!(answer.starts_with("HTTP/1.1 400"), "{policy:?} {name}: {answer}");
            }
        }
        assert!(
            up.requests().iter().all(|r| !r.head().to_ascii_lowercase().contains("transfer_encoding")),
            "a lookalike reached the upstream"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_policy_forwards_drops_or_rejects() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let req = b"GET / HTTP/1.1\r\nhost: a\r\nx_api_key: k1\r\nconnection: close\r\n\r\n";

        let server = start(&up, None);
        let answer = send(server.addr("web"), req).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("x_api_key: k1"), "forwarded by default: {answer}");

        let server = start(&up, Some("drop"));
        let answer = send(server.addr("web"), req).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(!answer.contains("x_api_key"), "dropped: {answer}");
        // Under `drop`, a lookalike is dropped too, and the request still framed by
        // its real content-length.
        let answer = send(
            server.addr("web"),
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\ntransfer_encoding: chunked\r\nconnection: close\r\n\r\nok",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(!answer.contains("transfer_encoding"), "{answer}");

        let server = start(&up, Some("reject"));
        let answer = send(server.addr("web"), req).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_extensions_are_checked_and_not_forwarded() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        let ok = send(
            addr,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5;name=\"v;x\"\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let seen = up.requests().last().map(|r| r.body.clone()).unwrap_or_default();
        assert_eq!(&seen[..], b"hello", "the body without the extension");
        for bad in [
            &b"5;name=\"unterminated\r\nhello\r\n0\r\n\r\n"[..],
            b"5;name=\"cr\rx\"\r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut req =
                b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
            req.extend_from_slice(bad);
            let before = up.requests().len();
            let answer = send(addr, &req).await;
            assert!(
                answer.starts_with("HTTP/1.1 400") && answer.contains("invalid chunked request body"),
                "{:?}: {answer}",
                String::from_utf8_lossy(bad)
            );
            assert!(
                up.requests()[before..].iter().all(|r| r.body.as_ref() != b"hello"),
                "a malformed chunk reached the upstream as data"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailer_section_over_its_bound_is_a_400_even_in_one_read() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        let mut req = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n".to_vec();
        for i in 0..40 {
            req.extend_from_slice(format!("x-t-{i}: {}\r\n", "v".repeat(500)).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let answer = send(addr, &req).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("invalid request trailers"),
            "{answer}"
        );
        assert!(
            up.requests().iter().all(|r| r.body.as_ref() != b"hello"),
            "the request reached the upstream whole"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_lines_ended_by_a_bare_lf_are_refused_without_waiting() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        // The client never sends a CRLF: the answer must not wait for one (the
        // stream idle timeout is a minute; `send` waits half a second).
        for body in [&b"5\nhello\n0\n\n"[..], b"5;a\nhello", b"5\rhello"] {
            let mut req =
                b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            req.extend_from_slice(body);
            let answer = send(addr, &req).await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{:?}: {answer:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(up.requests().iter().all(|r| r.body.as_ref() != b"hello"));
    })
    .await;
}

/// An upstream that reads one request and answers `answer`, then closes.
fn answering(answer: &'static [u8]) -> Upstream {
    proxy_test_support::upstream::spawn_raw(move |mut stream, _| async move {
        if proxy_test_support::upstream::read_request(&mut stream)
            .await
            .is_none()
        {
            return;
        }
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
}

/// What a client gets for a `GET` through the proxy when the upstream answers `answer`.
async fn client_gets(answer: &'static [u8]) -> String {
    let up = answering(answer);
    let server = start(&up, None);
    send(
        server.addr("web"),
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_field_named_like_a_framing_field_never_reaches_the_client() {
    with_timeout(Duration::from_secs(30), async {
        let answer = client_gets(
            b"HTTP/1.1 200 OK\r\nContent_Length: 40\r\nTransfer_Encoding: chunked\r\n\
              X_Kept: 1\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.contains("content_length"), "{answer}");
        assert!(!lower.contains("transfer_encoding"), "{answer}");
        assert!(lower.contains("x_kept: 1"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_body_malformed_from_its_first_byte_is_a_502() {
    with_timeout(Duration::from_secs(30), async {
        let answer = client_gets(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(says(&answer, "upstream_protocol_error"), "{answer}");
    })
    .await;
}

/// Whether a proxy's answer names `reason` in its `x-proxy-error` field.
fn says(answer: &str, reason: &str) -> bool {
    answer
        .to_ascii_lowercase()
        .contains(&format!("x-proxy-error: {reason}\r\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_is_a_protocol_error_and_a_cut_one_a_reset() {
    with_timeout(Duration::from_secs(30), async {
        let malformed: [&'static [u8]; 4] = [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
        ];
        for bytes in malformed {
            let answer = client_gets(bytes).await;
            assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
            assert!(says(&answer, "upstream_protocol_error"), "{answer}");
        }
        // The connection closed in the middle of the head: a reset, not a protocol error.
        let answer = client_gets(b"HTTP/1.1 200 OK\r\nContent-Le").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(says(&answer, "upstream_reset"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_is_refused_both_ways() {
    with_timeout(Duration::from_secs(30), async {
        // A request coded `gzip, chunked`: 501, and nothing reaches the upstream.
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let answer = send(
            server.addr("web"),
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
        assert!(up.requests().is_empty(), "the request reached the upstream");

        // An answer coded `gzip, chunked`: its content would reach the client without
        // its coding's name, so the client gets a 502 instead.
        let answer = client_gets(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_and_hosts_outside_the_grammar_are_refused() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(70_000));
        let refused: [(&[u8], &str); 7] = [
            // Asterisk-form is for OPTIONS only (RFC 9112 3.2.4).
            (b"GET * HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n", "400"),
            // No URI has a backslash; some servers read it as `/`.
            (b"GET /a\\b HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n", "400"),
            // An absolute-form authority becomes the Host sent on: no userinfo, no bad port.
            (b"GET http://a.example@evil.example/x HTTP/1.1\r\nhost: a.example\r\nconnection: close\r\n\r\n", "400"),
            (b"GET http://u:p@a.example/x HTTP/1.1\r\nhost: a.example\r\nconnection: close\r\n\r\n", "400"),
            (b"GET http://a.example:80x/x HTTP/1.1\r\nhost: a.example\r\nconnection: close\r\n\r\n", "400"),
            // An http URI has a host (RFC 9110 4.2.1).
            (b"GET / HTTP/1.1\r\nhost: \r\nconnection: close\r\n\r\n", "400"),
            // A request line longer than the head limit: 414 (RFC 9112 3).
            (long.as_bytes(), "414"),
        ];
        for (req, status) in refused {
            let answer = send(addr, req).await;
            let shown = String::from_utf8_lossy(&req[..req.len().min(80)]);
            assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{shown}: {answer}");
        }
        assert!(up.requests().is_empty(), "a refused request reached the upstream");
        let answer = send(
            addr,
            b"OPTIONS * HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        // Well-formed: past the checks, to routing, which here has no `*` route: the
        // proxy answers for itself (RFC 9110 9.3.7).
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(up.requests().is_empty(), "OPTIONS * reached the upstream");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_sent_as_several_h2_fields_reach_an_http1_upstream_on_one_line() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        // An HTTP/2 client may send each cookie as a field of its own (RFC 9113 8.2.3),
        // as browsers do; HTTP/1.1 allows one `Cookie` line (RFC 6265 5.4).
        let cookies = [
            ("cookie", "a=1"),
            ("x-a", "1"),
            ("cookie", "b=2; c=3"),
            ("cookie", "d=4"),
        ];
        let req = client::build(addr, http::Method::GET, "/", &cookies, Bytes::new()).unwrap();
        let answer = client::send_h2c(addr, req).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let head = answer.text().to_ascii_lowercase();
        assert_eq!(head.matches("cookie:").count(), 1, "{head}");
        assert!(
            head.contains("\r\ncookie: a=1; b=2; c=3; d=4\r\n"),
            "{head}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_names_one_valid_authority_and_only_it_goes_on() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        let h2c_get = |uri: &str, hosts: &[&str]| {
            let mut req = http::Request::get(uri);
            for h in hosts {
                req = req.header("host", *h);
            }
            client::send_h2c(
                addr,
                req.body(http_body_util::Full::new(Bytes::new())).unwrap(),
            )
        };
        // Refused before anything reads them: over HTTP/1.1 these are 400s too.
        for (uri, hosts, why) in [
            ("/p", &["a.example", "b.example"][..], "more than one host"),
            (
                "http://a.example/p",
                &["a.example", "b.example"][..],
                "more than one host",
            ),
            ("/p", &["u@a.example"][..], "invalid host"),
            ("/p", &["a b"][..], "invalid host"),
            ("/p", &[][..], "missing :authority and host"),
        ] {
            let answer = h2c_get(uri, hosts).await.unwrap();
            assert_eq!(answer.status, 400, "{uri} {hosts:?}");
            assert!(
                answer.text().contains(why),
                "{uri} {hosts:?}: {}",
                answer.text()
            );
        }
        assert!(
            up.requests().is_empty(),
            "a refused request reached the upstream"
        );
        // `:authority` goes on as the one Host, whatever Host the client sent with it;
        // a lone Host goes on as it is.
        for (uri, hosts, sent) in [
            ("http://a.example/p", &["b.example"][..], "a.example"),
            ("http://a.example/p", &[][..], "a.example"),
            ("/p", &["c.example:8080"][..], "c.example:8080"),
        ] {
            let answer = h2c_get(uri, hosts).await.unwrap();
            assert_eq!(answer.status, 200, "{uri} {hosts:?}: {}", answer.text());
            let head = answer.text().to_ascii_lowercase();
            assert_eq!(head.matches("\r\nhost:").count(), 1, "{head}");
            assert!(head.contains(&format!("\r\nhost: {sent}\r\n")), "{head}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_goes_on_only_when_asked_for_and_never_to_h2c() {
    with_timeout(Duration::from_secs(60), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let addr = server.addr("web");
        let plain: [&[u8]; 3] = [
            // `Upgrade` not named in `Connection` (RFC 9110 7.8): removed, and no
            // `connection: upgrade` made up for it.
            b"GET / HTTP/1.1\r\nhost: a\r\nupgrade: foo\r\nconnection: close\r\n\r\n",
            // `h2c`: the request goes on as a plain one, its settings field dropped.
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: H2C\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ];
        for req in plain {
            let answer = send(addr, req).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let seen = up.requests().last().map(|r| r.head()).unwrap_or_default();
            let seen = seen.to_ascii_lowercase();
            assert!(!seen.contains("upgrade"), "{seen}");
            assert!(!seen.contains("http2-settings"), "{seen}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_of_protocols_nobody_asked_for_is_a_502() {
    with_timeout(Duration::from_secs(30), async {
        let answer = client_gets(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\ntunnel bytes",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(!answer.contains("101"), "{answer}");
        assert!(says(&answer, "upstream_protocol_error"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_answer_with_transfer_encoding_is_a_502() {
    with_timeout(Duration::from_secs(30), async {
        // RFC 9112 6.1: faulty framing, whatever it says.
        let answer = client_gets(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(says(&answer, "upstream_protocol_error"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_request_without_host_goes_on_with_one() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let answer = send(server.addr("web"), b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(answer.contains(" 200 "), "{answer}");
        // HTTP/1.1 requires a Host (RFC 9112 3.2): the cluster's name.
        let seen = up.requests().last().map(|r| r.head()).unwrap_or_default();
        assert!(seen.starts_with("GET / HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase().contains("host: app\r\n"),
            "{seen}"
        );
        // An HTTP/2 upstream gets it as `:authority`.
        let cfg = yaml::config(
            &[yaml::listener("web", "app", &[])],
            &[yaml::cluster("app", &[up.addr], &["protocol: http2"])],
        );
        let h2 = TestServer::start(&cfg, Registry::default());
        let answer = send(h2.addr("web"), b"GET /h2 HTTP/1.0\r\n\r\n").await;
        assert!(answer.contains(" 200 "), "{answer}");
        let seen = up
            .requests()
            .pop()
            .expect("the request reached the upstream");
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(seen.uri.authority().map(|a| a.as_str()), Some("app"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_asking_for_keep_alive_is_told_its_connection_stays() {
    with_timeout(Duration::from_secs(30), async {
        let up = Upstream::head_echo();
        let server = start(&up, None);
        let mut s = tokio::net::TcpStream::connect(server.addr("web"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        for path in ["/a", "/b"] {
            let req = format!("GET {path} HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let answer = raw::read_response(&mut s, &mut buf).await.unwrap();
            assert_eq!(answer.status, 200, "{path}");
            // Without it, an HTTP/1.0 client takes the connection as closing.
            assert_eq!(answer.header("connection"), Some("keep-alive"), "{path}");
        }
        assert_eq!(up.requests().len(), 2);
        // Without `keep-alive`, an HTTP/1.0 connection closes after its answer.
        s.write_all(b"GET /c HTTP/1.0\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let answer = raw::read_response(&mut s, &mut buf).await.unwrap();
        assert_eq!(answer.header("connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_both_length_and_chunked_is_read_chunked_and_its_connection_dropped() {
    with_timeout(Duration::from_secs(30), async {
        // Every request on a connection is answered with both fields.
        let up = proxy_test_support::upstream::spawn_raw(|mut stream, _| async move {
            while proxy_test_support::upstream::read_request(&mut stream)
                .await
                .is_some()
            {
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
        let server = start(&up, None);
        for _ in 0..2 {
            let answer = send(
                server.addr("web"),
                b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            // Read as chunked (RFC 9112 6.3): the body is `ok`, not five bytes.
            let lower = answer.to_ascii_lowercase();
            assert!(!lower.contains("content-length: 5"), "{answer}");
            assert!(answer.ends_with("ok\r\n0\r\n\r\n"), "{answer}");
        }
        // An answer that may be an attempt to desynchronise: its connection is not
        // used again.
        assert_eq!(up.connections(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_body_that_breaks_before_anything_went_out_is_a_502() {
    with_timeout(Duration::from_secs(30), async {
        // A first chunk, then a malformed size line, all in one read: the head and
        // the first chunk were only buffered when the body failed.
        let answer = client_gets(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nok\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(!answer.contains("hello"), "{answer}");
        assert!(says(&answer, "upstream_protocol_error"), "{answer}");
    })
    .await;
}
