//! An `H3Listener` built with `behind_load_balancer` behind the QUIC-LB forwarder
//! in encapsulated mode (127.0.0.1): an HTTP/3 request through the forwarder
//! reaches the request stack with the client's real address as its peer.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::net::UdpSocket as StdUdpSocket;

use h3_support::{Client, Tls, TEST_TIMEOUT};
use proxy_core::{Body, BoxError, BoxHttp, ConnInfo, HttpRequest, HttpResponse};
use proxy_quic::h3::H3Listener;
use proxy_quic::lb::{BehindLb, ForwarderBuilder, ReturnPath, Routes};
use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
use proxy_test_support::with_timeout;

/// Answers with the peer address the listener reported for the request.
fn peer_stack() -> BoxHttp {
    BoxHttp::new(tower::service_fn(|req: HttpRequest| async move {
        let peer = req.extensions().get::<ConnInfo>().and_then(|c| c.peer);
        let text = peer.map(|p| p.to_string()).unwrap_or_default();
        Ok::<_, BoxError>(HttpResponse::new(Body::from(text)))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_listener_behind_the_forwarder_sees_the_client() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = socket.local_addr().unwrap();
        let mut decoder = Decoder::new();
        decoder.insert(CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap());
        let sid = ServerId::from_hex("0a01").unwrap();
        let routes = Routes::new(decoder, [(sid, server_addr)]).unwrap();
        let lb = ForwarderBuilder::new(routes)
            .return_path(ReturnPath::Encapsulated)
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();

        let listener = H3Listener::builder("h3", tls.server())
            .behind_load_balancer(BehindLb::new([lb.local_addr()]))
            .bind_socket(socket)
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(peer_stack(), async {
            let _ = stopped.await;
        }));

        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let client_addr = endpoint.local_addr().unwrap();
        let mut client = Client::connect_from(endpoint, lb.local_addr(), tls.client.clone()).await;
        let answer = client.get(lb.local_addr(), "/who").await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.body, client_addr.to_string().as_bytes());
        assert_eq!(client.conn.remote_address(), lb.local_addr());
        let s = lb.stats().snapshot();
        assert!(s.replies > 0 && s.flows_opened == 0, "{s:?}");
        drop(client);
        let _ = stop.send(());
        server.abort();
    })
    .await;
}
