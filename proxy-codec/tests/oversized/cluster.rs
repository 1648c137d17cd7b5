//! A response over the cluster's limit, through a running proxy (`proxy_core::Server`
//! with the codec registered): the call fails with `response_too_large`, the
//! endpoint's local errors and the cluster's warning say so (not `upstream_reset`),
//! and the shared upstream connection carries the next call.

use bytes::{Bytes, BytesMut};
use proxy_codec::{bolt, metrics::TooLarge, Bolt, FrameKind, Protocol};
use proxy_core::Registry;
use proxy_test_support::{
    free_addr,
    prometheus::sample,
    rpc::read_frame,
    upstream::{spawn_raw, Upstream},
    yaml, TestServer,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};

use super::{bolt_call, bolt_reason, logged, logs, wire, BIG, LIMIT};

/// A Bolt upstream that answers `big` with [`BIG`] bytes and any other call with
/// `ok`.
fn upstream() -> Upstream {
    spawn_raw(|mut s, _| async move {
        let mut buf = BytesMut::new();
        while let Some(f) = read_frame(&Bolt, &mut s, &mut buf).await {
            if Bolt.kind(&f) != FrameKind::Request {
                continue;
            }
            let content = if &f.content[..] == b"big" {
                Bytes::from(vec![b'a'; BIG])
            } else {
                Bytes::from_static(b"ok")
            };
            let answer = bolt::BoltFrame {
                rpc_type: bolt::TYPE_RESPONSE,
                cmd_code: bolt::CMD_RESPONSE,
                status: bolt::status::SUCCESS,
                class_name: Bytes::from_static(bolt::SOFA_RESPONSE.as_bytes()),
                header: Bytes::new(),
                content,
                ..f
            };
            if s.write_all(&wire(&Bolt, &[answer])).await.is_err() {
                return;
            }
        }
    })
}

#[tokio::test]
async fn a_response_over_the_clusters_limit_fails_its_call_as_response_too_large() {
    logs::capture();
    timeout(LIMIT, async {
        let up = upstream();
        let admin = free_addr();
        let listener = yaml::listener("rpc", "big", &["protocol: bolt"]);
        let cluster = yaml::cluster(
            "big",
            &[up.addr],
            &["protocol: bolt", "protocol_options: { max_frame_bytes: 4KiB }"],
        );
        let config = format!(
            "admin: {{ address: \"{admin}\" }}\n{}",
            yaml::config(&[listener], &[cluster])
        );
        let mut registry = Registry::default();
        proxy_codec::register(&mut registry);
        let proxy = TestServer::start(&config, registry);

        let mut c = TcpStream::connect(proxy.addr("rpc")).await.unwrap();
        c.write_all(&wire(&Bolt, &[bolt_call(1, "big")]))
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let failed = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!(failed.request_id, 1);
        assert_eq!(failed.status, bolt::status::CODEC_EXCEPTION);
        assert_eq!(bolt_reason(failed).as_deref(), Some("response_too_large"));
        // The upstream connection stays up for the next call.
        c.write_all(&wire(&Bolt, &[bolt_call(2, "small")]))
            .await
            .unwrap();
        let served = read_frame(&Bolt, &mut c, &mut buf).await.unwrap();
        assert_eq!((served.request_id, served.status), (2, bolt::status::SUCCESS));
        assert_eq!(up.connections(), 1);

        let (_, text) = proxy.admin_get("/stats/prometheus").await;
        let codec = sample(
            &text,
            r#"proxy_codec_too_large_total{protocol="bolt",kind="upstream_response",reason="response_too_large"}"#,
        );
        assert_eq!(codec, Some(1.0), "{text}");
        let endpoint = |reason: &str| {
            let series = format!(
                r#"proxy_endpoint_local_responses_total{{cluster="big",endpoint="{}",reason="{reason}"}}"#,
                up.addr
            );
            sample(&text, &series)
        };
        assert_eq!(endpoint("upstream_reset"), Some(0.0), "{text}");
        // Counted under its own reason, never as a reset.
        assert_eq!(endpoint("response_too_large"), Some(1.0), "{text}");
        assert_eq!(endpoint("other"), Some(0.0), "{text}");

        let len = logged("bolt", TooLarge::UpstreamResponse);
        assert!(len > BIG as u64, "logged len {len}");
        let warned = logs::lines_with(&[
            ("reason", "response_too_large"),
            ("message", "upstream attempt failed"),
        ]);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].level, tracing::Level::WARN);
        assert!(logs::lines_with(&[("reason", "upstream_reset")]).is_empty());
    })
    .await
    .unwrap();
}
