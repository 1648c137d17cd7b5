//! A hot upgrade of an HTTP/3 listener rolled back, in one test process: the
//! listener hands off to a successor that dies (its runtime dropped, as with its
//! process); a listener started again takes the socket over from the first, as a
//! new process would. New connections land on it, the first listener's connection
//! keeps its request in flight going (its datagrams forwarded), the first drains
//! and ends, and the listener started again can be handed over in turn.

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
    handoff::{Generation, HandedOver},
};
use proxy_test_support::{eventually, with_timeout};
use tokio::sync::{oneshot, Notify};

/// A successor serving on `given` on a runtime and thread of its own.
struct Doomed {
    die: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Doomed {
    /// Drops its runtime with everything on it (the listener, its socket and its
    /// end of the channel), as when its process is killed; returns once done.
    fn kill(self) {
        let _ = self.die.send(());
        self.thread.join().unwrap();
    }
}

fn doomed_successor(tls: rustls::ServerConfig, given: HandedOver) -> Doomed {
    let (die, dead) = oneshot::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = H3Listener::builder("h3", tls)
                .take_over(given.forward, given.generation)
                .bind_socket(std::net::UdpSocket::from(given.socket))
                .unwrap();
            let served = tokio::spawn(listener.serve(
                handoff_stack("dead", Arc::default(), Arc::default()),
                std::future::pending(),
            ));
            ready_tx.send(()).unwrap();
            let _ = dead.await;
            served.abort();
        });
        drop(runtime);
    });
    ready.recv().unwrap();
    Doomed { die, thread }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_started_again_after_a_roll_back_serves_and_the_first_one_drains() {
    with_timeout(TEST_TIMEOUT, async {
        let tls = Tls::new();
        let (started, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let first = H3Listener::builder("h3", tls.server())
            .drain_timeout(Duration::from_secs(10))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = first.local_addr();
        let first_handoff = first.handoff();
        let first_stats = first.stats();
        let (_stop_first, first_stopped) = oneshot::channel::<()>();
        let first_served = tokio::spawn(first.serve(
            handoff_stack("first", started.clone(), release.clone()),
            async {
                let _ = first_stopped.await;
            },
        ));

        let mut a = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut a, addr, "/before").await, "first:/before");
        // A request in flight across the hand-off, the death and the restart.
        let in_flight = wait_in_flight(a.send.clone(), addr);
        assert!(
            eventually(Duration::from_secs(5), || started.load(Ordering::SeqCst)
                == 1)
            .await
        );

        // The hand-off to a successor, which serves new connections and dies: the
        // first listener reads its socket again (it drains, GOAWAY sent).
        let doomed = doomed_successor(tls.server(), first_handoff.prepare().unwrap());
        first_handoff.hand_off().unwrap();
        assert!(
            eventually(Duration::from_secs(5), || first_stats.snapshot().goaways
                == 1)
            .await
        );
        let mut lost = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut lost, addr, "/during").await, "dead:/during");
        doomed.kill();
        drop(lost);

        // Started again in this process: it takes the socket over from the first.
        let given = first_handoff.prepare().unwrap();
        assert_eq!(given.generation, Generation::Even);
        first_handoff.hand_off().unwrap();
        let again = H3Listener::builder("h3", tls.server())
            .take_over(given.forward, given.generation)
            .bind_socket(std::net::UdpSocket::from(given.socket))
            .unwrap();
        assert_eq!(again.local_addr(), addr);
        let again_handoff = again.handoff();
        assert_eq!(again_handoff.generation(), Generation::Odd);
        let (_stop_again, again_stopped) = oneshot::channel::<()>();
        let again_served = tokio::spawn(again.serve(
            handoff_stack("again", Arc::default(), Arc::default()),
            async {
                let _ = again_stopped.await;
            },
        ));

        // New connections land on the listener started again.
        let mut b = Client::connect(addr, tls.client.clone()).await;
        assert_eq!(text(&mut b, addr, "/after").await, "again:/after");
        // The first listener's request in flight completes, its datagrams
        // forwarded by the listener started again.
        release.notify_one();
        let (status, body) = in_flight.await.unwrap().unwrap();
        assert_eq!((status, body), (200, LARGE));
        assert!(
            again_handoff.stats().forwarded > 0,
            "{:?}",
            again_handoff.stats()
        );
        assert!(first_handoff.stats().received_forwarded > 0);
        // No hand-over while the first one drains; it ends on its own, then the
        // listener started again may be handed over in the next upgrade.
        assert!(again_handoff.prepare().is_err(), "the first one drains");
        drop(a);
        tokio::time::timeout(Duration::from_secs(15), first_served)
            .await
            .expect("the first listener drains")
            .unwrap();
        assert!(first_handoff.has_ended());
        let next = again_handoff.prepare().unwrap();
        assert_eq!(next.generation, Generation::Odd);
        again_handoff.abandon();
        drop(next);
        assert_eq!(text(&mut b, addr, "/still").await, "again:/still");

        // A listener that has ended closes a channel given to it at once: a
        // successor of it forwards nothing and may be handed over at once.
        let late = first_handoff.prepare().unwrap();
        first_handoff.hand_off().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let successor = H3Listener::builder("h3", tls.server())
            .take_over(late.forward, late.generation)
            .bind_socket(socket)
            .unwrap();
        assert!(successor.handoff().prepare().is_ok(), "nothing to forward");
        drop((successor, late.socket, b, _stop_again));
        let _ = again_served.await;
    })
    .await;
}
