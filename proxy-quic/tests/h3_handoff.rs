//! The hot upgrade of an HTTP/3 listener, in one test process: a second listener
//! takes the first's UDP socket and forwarding channel; an HTTP/3 client's
//! connection to the first keeps working across the switch (its request in flight
//! completes, its datagrams forwarded), it gets GOAWAY, and new connections land
//! on the second.

#![allow(clippy::unwrap_used)]

use crate::h3_support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use h3_support::{handoff_stack, text, wait_in_flight, Client, Tls, LARGE, TEST_TIMEOUT};
use proxy_quic::{
    h3::H3Listener,
    handoff::{Generation, HandoffStats},
};
use proxy_test_support::{eventually, with_timeout};
use tokio::sync::{oneshot, Notify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_keeps_working_across_the_switch_and_new_ones_land_on_the_new_listener() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (started, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let old = H3Listener::builder("h3", tls.server())
            .drain_timeout(Duration::from_secs(10))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = old.local_addr();
        let old_handoff = old.handoff();
        assert_eq!(old_handoff.generation(), Generation::Even);
        let old_stats = old.stats();
        let (_stop_old, old_stopped) = oneshot::channel::<()>();
        let old_served = tokio::spawn(old.serve(
            handoff_stack("old", started.clone(), release.clone()),
            async {
                let _ = old_stopped.await;
            },
        ));

        let mut a = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut a, addr, "/before").await, "old:/before");
        // A request in flight across the switch.
        let in_flight = wait_in_flight(a.send.clone(), addr);
        assert!(
            eventually(Duration::from_secs(5), || started.load(Ordering::SeqCst)
                == 1)
            .await
        );

        // The new listener takes the socket; the old one hands off.
        let given = old_handoff.prepare().unwrap();
        assert_eq!(given.generation, Generation::Even);
        let new = H3Listener::builder("h3", tls.server())
            .take_over(given.forward, given.generation)
            .bind_socket(std::net::UdpSocket::from(given.socket))
            .unwrap();
        assert_eq!(new.local_addr(), addr);
        let new_handoff = new.handoff();
        assert_eq!(new_handoff.generation(), Generation::Odd);
        let (_stop_new, new_stopped) = oneshot::channel::<()>();
        let new_served = tokio::spawn(new.serve(
            handoff_stack("new", Arc::default(), Arc::default()),
            async {
                let _ = new_stopped.await;
            },
        ));
        old_handoff.hand_off().unwrap();
        assert!(old_handoff.is_handed_off());
        // No upgrade of the new listener while the old one drains.
        let refused = new_handoff.prepare().unwrap_err();
        assert!(refused.to_string().contains("still drains"), "{refused}");

        // The request in flight completes: every datagram of its connection went
        // through the new listener's socket.
        release.notify_one();
        let (status, body) = in_flight.await.unwrap().unwrap();
        assert_eq!((status, body), (200, LARGE));
        let forwarded = new_handoff.stats().forwarded;
        assert!(forwarded > 0, "{:?}", new_handoff.stats());
        let HandoffStats {
            received_forwarded, ..
        } = old_handoff.stats();
        assert!(received_forwarded > 0 && received_forwarded <= forwarded);

        // New connections land on the new listener.
        let mut b = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut b, addr, "/after").await, "new:/after");
        // The old connection was told to go away, and the old listener drains
        // and returns on its own.
        assert!(eventually(Duration::from_secs(5), || old_stats.snapshot().goaways == 1).await);
        assert!(
            a.get(addr, "/late").await.is_err(),
            "no new request after GOAWAY"
        );
        drop(a);
        tokio::time::timeout(Duration::from_secs(15), old_served)
            .await
            .expect("the old listener drains")
            .unwrap();
        // Once it is gone, nothing is forwarded and the new listener serves on.
        assert_eq!(text(&mut b, addr, "/still").await, "new:/still");
        // ... and may be upgraded in turn.
        let next = new_handoff.prepare().unwrap();
        assert_eq!(next.generation, Generation::Odd);
        new_handoff.abandon();
        let mut c = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut c, addr, "/last").await, "new:/last");
        assert_eq!(new_handoff.stats().forward_dropped, 0);
        drop((b, c, _stop_new));
        let _ = new_served.await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_hand_over_changes_nothing() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let old = H3Listener::builder("h3", tls.server())
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = old.local_addr();
        let handoff = old.handoff();
        let (_stop, stopped) = oneshot::channel::<()>();
        let _served = tokio::spawn(old.serve(
            handoff_stack("old", Arc::default(), Arc::default()),
            async {
                let _ = stopped.await;
            },
        ));
        let given = handoff.prepare().unwrap();
        handoff.abandon();
        drop(given);
        let mut a = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut a, addr, "/x").await, "old:/x");
        assert!(!handoff.is_handed_off());
        // Handing off with nothing prepared is an error (the listener drains).
        assert!(handoff.hand_off().is_err());
    })
    .await;
}
