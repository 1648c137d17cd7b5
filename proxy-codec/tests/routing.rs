//! Routing by service and method through a running proxy (`proxy_core::Server`):
//! two Bolt services on one listener go to two clusters, a method-level route wins
//! over its service's, unknown services get Bolt's `NO_PROCESSOR`, and an `auto`
//! listener routes Dubbo the same way. The upstreams are in-process Rust servers.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    Bolt, Dubbo, Protocol,
};
use proxy_core::Registry;
use proxy_test_support::{
    client::raw,
    free_addr,
    rpc::{self, read_frame},
    TestServer,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(20);

fn bolt_call(id: u32, service: &str, method: &str) -> BoltFrame {
    BoltFrame {
        version: BoltVersion::V2 {
            version: 2,
            switch: 1,
        },
        timeout: 5000,
        header: Bolt::header_map([
            ("service", Some(service)),
            ("sofa_head_target_service", Some(service)),
            ("sofa_head_method_name", Some(method)),
            ("rpc_trace_context.sofaTraceId", Some("0a0b0c")),
        ]),
        ..BoltFrame::sofa_request(id, service, method, format!("call-{id}"))
    }
}

/// The proxy on its own thread, with the codec registered; shut down on drop.
fn start(yaml: &str) -> TestServer {
    let mut registry = Registry::default();
    proxy_codec::register(&mut registry);
    TestServer::start(yaml, registry)
}

fn config(protocol: &str, clusters: &[(&str, &str, SocketAddr)]) -> String {
    config_with_admin(protocol, clusters, None)
}

fn config_with_admin(
    protocol: &str,
    clusters: &[(&str, &str, SocketAddr)],
    admin: Option<SocketAddr>,
) -> String {
    let admin = admin.map_or_else(String::new, |a| format!("admin: {{ address: \"{a}\" }}\n"));
    let mut yaml = format!(
        r#"{admin}runtime: {{ worker_threads: 1 }}
listeners:
  - name: rpc
    address: 127.0.0.1:0
    protocol: {protocol}
    protocol_options:
      bolt: {{ max_frame_bytes: 1MiB, max_in_flight: 256 }}
    virtual_hosts:
      - name: rpc
        domains: ["*"]
        routes:
          - match: {{ path: {{ exact: "/com.example.User:1.0/delete" }} }}
            cluster: audit
          - match: {{ path: {{ prefix: "/com.example.Pay:1.0/" }} }}
            cluster: pay
          - match: {{ path: {{ prefix: "/com.example.User:1.0/" }} }}
            cluster: user
          - match: {{ path: {{ prefix: "/org.example.Greeter/" }}, headers: [{{ name: tenant, value: {{ exact: gold }} }}] }}
            cluster: gold
          - match: {{ path: {{ prefix: "/org.example.Greeter/" }} }}
            cluster: greeter
clusters:
"#
    );
    for (name, proto, addr) in clusters {
        yaml.push_str(&format!(
            "  - name: {name}\n    protocol: {proto}\n    protocol_options: {{ connections_per_endpoint: 2 }}\n    endpoints: [\"{addr}\"]\n"
        ));
    }
    yaml
}

#[tokio::test]
async fn two_bolt_services_on_one_listener_go_to_two_clusters() {
    tokio::time::timeout(LIMIT, async {
        let pay = rpc::upstream(Bolt, "pay");
        let user = rpc::upstream(Bolt, "user");
        let audit = rpc::upstream(Bolt, "audit");
        let greeter = rpc::upstream(Dubbo, "greeter");
        let admin = free_addr();
        let proxy = start(&config_with_admin(
            "bolt",
            &[
                ("pay", "bolt", pay.addr),
                ("user", "bolt", user.addr),
                ("audit", "bolt", audit.addr),
                ("gold", "dubbo", greeter.addr),
                ("greeter", "dubbo", greeter.addr),
            ],
            Some(admin),
        ));
        let mut c = TcpStream::connect(proxy.addr("rpc")).await.unwrap();
        // 60 calls on one connection, all in flight at once, all with the id space
        // reused by service (ids collide with nothing upstream: they are rewritten).
        let mut out = BytesMut::new();
        for id in 0..60u32 {
            let (service, method) = match id % 3 {
                0 => ("com.example.Pay:1.0", "transfer"),
                1 => ("com.example.User:1.0", "get"),
                _ => ("com.example.User:1.0", "delete"),
            };
            Bolt.encode(&bolt_call(id, service, method), &mut out)
                .unwrap();
        }
        Bolt.encode(&bolt_call(1000, "com.example.Nothing:1.0", "x"), &mut out)
            .unwrap();
        c.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        for _ in 0..61 {
            let f = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
            if f.request_id == 1000 {
                assert_eq!(f.status, bolt::status::NO_PROCESSOR);
                continue;
            }
            assert_eq!(f.status, bolt::status::SUCCESS, "{f:?}");
            let text = String::from_utf8(f.content.to_vec()).unwrap();
            let want = match f.request_id % 3 {
                0 => format!("pay /com.example.Pay:1.0/transfer call-{}", f.request_id),
                1 => format!("user /com.example.User:1.0/get call-{}", f.request_id),
                _ => format!("audit /com.example.User:1.0/delete call-{}", f.request_id),
            };
            assert_eq!(text, want);
        }
        assert_eq!(pay.hits(), 20);

        // The codec's counters are on the admin page, next to the route's.
        let page = raw::get(admin, "/stats/prometheus", &[]).await;
        assert!(
            page.contains("proxy_codec_downstream_requests_total{protocol=\"bolt\"} 61"),
            "{page}"
        );
        assert!(
            page.contains("proxy_codec_upstream_requests_total{protocol=\"bolt\"} 60"),
            "{page}"
        );
        assert!(
            page.contains("proxy_codec_error_replies_total{protocol=\"bolt\"} 1"),
            "{page}"
        );
        // Bytes and connections count for the RPC listener and its upstream
        // endpoints, at the connection, like HTTP's.
        let series = |prefix: &str, name: &str| -> f64 {
            page.lines()
                .filter(|l| l.starts_with(&format!("{prefix}_{name}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert!(series("proxy_listener", "rx_bytes_total") > 0.0, "{page}");
        assert!(series("proxy_listener", "tx_bytes_total") > 0.0, "{page}");
        assert!(
            series("proxy_endpoint_upstream", "rx_bytes_total") > 0.0,
            "{page}"
        );
        assert!(
            series("proxy_endpoint_upstream", "tx_bytes_total") > 0.0,
            "{page}"
        );
        assert!(
            series("proxy_endpoint_upstream", "connections_total") > 0.0,
            "{page}"
        );
    })
    .await
    .unwrap();
}

fn dubbo_call(id: u64, method: &str, tenant: &str) -> DubboFrame {
    let mut w = Writer::new();
    w.string("2.0.2")
        .string("org.example.Greeter")
        .string("1.0.0")
        .string(method);
    w.string("Ljava/lang/String;").string("world");
    w.string_map([("path", "org.example.Greeter"), ("tenant", tenant)]);
    DubboFrame {
        flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
        status: 0,
        request_id: id,
        body: Bytes::from(w.into_bytes()),
    }
}

#[tokio::test]
async fn an_auto_listener_routes_bolt_and_dubbo_by_service_and_attachments() {
    tokio::time::timeout(LIMIT, async {
        let pay = rpc::upstream(Bolt, "pay");
        let user = rpc::upstream(Bolt, "user");
        let gold = rpc::upstream(Dubbo, "gold");
        let greeter = rpc::upstream(Dubbo, "greeter");
        let proxy = start(&config(
            "auto",
            &[
                ("pay", "bolt", pay.addr),
                ("user", "bolt", user.addr),
                ("audit", "bolt", user.addr),
                ("gold", "dubbo", gold.addr),
                ("greeter", "dubbo", greeter.addr),
            ],
        ));
        let addr = proxy.addr("rpc");

        let mut d = TcpStream::connect(&addr).await.unwrap();
        let mut out = BytesMut::new();
        Dubbo
            .encode(&dubbo_call(1, "hello", "gold"), &mut out)
            .unwrap();
        Dubbo
            .encode(&dubbo_call(2, "hello", "basic"), &mut out)
            .unwrap();
        d.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        let mut answers = Vec::new();
        for _ in 0..2 {
            let f = read_frame(&Dubbo, &mut d, &mut buf).await.unwrap();
            assert_eq!(f.status, dubbo::status::OK);
            let text = String::from_utf8_lossy(&f.body).into_owned();
            answers.push((
                f.request_id,
                text.split(' ').take(2).collect::<Vec<_>>().join(" "),
            ));
        }
        answers.sort();
        assert_eq!(
            answers,
            vec![
                (1, "gold /org.example.Greeter/hello".to_owned()),
                (2, "greeter /org.example.Greeter/hello".to_owned())
            ]
        );

        let mut b = TcpStream::connect(&addr).await.unwrap();
        let mut out = BytesMut::new();
        Bolt.encode(&bolt_call(5, "com.example.Pay:1.0", "refund"), &mut out)
            .unwrap();
        b.write_all(&out).await.unwrap();
        let f = read_frame(&Bolt, &mut b, &mut BytesMut::new())
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&f.content),
            "pay /com.example.Pay:1.0/refund call-5"
        );

        // HTTP on the same port goes through the same routes: a POST to a Bolt
        // service's path becomes a Bolt call (an HTTP-to-Bolt gateway).
        let mut h = TcpStream::connect(&addr).await.unwrap();
        h.write_all(b"POST /com.example.Pay:1.0/transfer HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nx-trace: t1\r\nconnection: close\r\n\r\nhello").await.unwrap();
        let mut resp = Vec::new();
        h.read_to_end(&mut resp).await.unwrap();
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("pay /com.example.Pay:1.0/transfer hello"), "{resp}");

        // Plain HTTP still works on the same port (and finds no route here).
        let mut h = TcpStream::connect(&addr).await.unwrap();
        h.write_all(b"GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = Vec::new();
        h.read_to_end(&mut resp).await.unwrap();
        let status = format!("HTTP/1.1 {}", StatusCode::NOT_FOUND.as_u16());
        assert!(
            resp.starts_with(status.as_bytes()),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_many_calls_each_answer_to_its_caller() {
    tokio::time::timeout(LIMIT, async {
        let pay = rpc::upstream(Bolt, "pay");
        let user = rpc::upstream(Bolt, "user");
        let proxy = start(&config(
            "bolt",
            &[
                ("pay", "bolt", pay.addr),
                ("user", "bolt", user.addr),
                ("audit", "bolt", user.addr),
                ("gold", "dubbo", pay.addr),
                ("greeter", "dubbo", pay.addr),
            ],
        ));
        let addr = proxy.addr("rpc");
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for conn in 0..40u32 {
            tasks.push(tokio::spawn(async move {
                let mut c = TcpStream::connect(&addr).await.unwrap();
                let (mut rd, mut wr) = c.split();
                // Every connection uses the same ids 0..100: collisions everywhere.
                let writer = async {
                    for id in 0..100u32 {
                        let service = if (id + conn).is_multiple_of(2) {
                            "com.example.Pay:1.0"
                        } else {
                            "com.example.User:1.0"
                        };
                        let mut f = bolt_call(id, service, "get");
                        f.content = Bytes::from(format!("c{conn}-{id}"));
                        let mut out = BytesMut::new();
                        Bolt.encode(&f, &mut out).unwrap();
                        wr.write_all(&out).await.unwrap();
                    }
                };
                let reader = async {
                    let mut buf = BytesMut::new();
                    let mut got = 0;
                    while got < 100 {
                        let n = loop {
                            if let Some(n) = Bolt.frame_length(&buf).unwrap() {
                                if buf.len() as u64 >= n {
                                    break n;
                                }
                            }
                            assert!(rd.read_buf(&mut buf).await.unwrap() > 0, "closed early");
                        };
                        let f = Bolt.decode(buf.split_to(n as usize).freeze()).unwrap();
                        let who = if (f.request_id + conn).is_multiple_of(2) {
                            "pay /com.example.Pay:1.0"
                        } else {
                            "user /com.example.User:1.0"
                        };
                        assert_eq!(
                            String::from_utf8_lossy(&f.content),
                            format!("{who}/get c{conn}-{}", f.request_id)
                        );
                        got += 1;
                    }
                };
                tokio::join!(writer, reader);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!("4000 calls over 40 connections in {:?}", started.elapsed());
    })
    .await
    .unwrap();
}
