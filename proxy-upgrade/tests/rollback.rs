//! Roll-back after `ready`, on real sockets: a fake old process hands one connection
//! to the new process, which then dies (its end of the upgrade socket closes) while
//! two connections are still to go. The old side takes the listening socket back
//! (`on_rollback` gets the very socket it sent), a `proxy_core::Server` started on it
//! accepts new connections, and the two connections left are adopted there and
//! served on their sockets.

use crate::common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::OwnedFd,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use proxy_core::{config::Config, Registry, Server};
use proxy_upgrade::{HandedOffConnection, ListenerSource, UpgradeServer};

/// An old process with one listener, `web`, whose server hands out `first` at once
/// and the others once `go` says so (the new process is dead by then).
struct Old {
    listener: OwnedFd,
    first: Mutex<Option<HandedOffConnection>>,
    later: Mutex<Vec<HandedOffConnection>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl ListenerSource for Old {
    fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>> {
        Ok(vec![("web".into(), vec![self.listener.try_clone()?])])
    }
    fn hand_off(&self) {}
    fn hand_off_all_connections(
        &self,
        _window: Duration,
        _max_unread_bytes: usize,
        sink: mpsc::Sender<HandedOffConnection>,
    ) {
        let first = self.first.lock().expect("lock").take();
        let later = std::mem::take(&mut *self.later.lock().expect("lock"));
        let go = self.go.lock().expect("lock").take();
        std::thread::spawn(move || {
            if let Some(c) = first {
                let _ = sink.send(c);
            }
            if let Some(go) = go {
                let _ = go.recv_timeout(Duration::from_secs(10));
            }
            for c in later {
                let _ = sink.send(c);
            }
        });
    }
}

/// A connection to `app`, and its accepted side as the old server would hand it out.
fn connection(app: &TcpListener) -> (TcpStream, HandedOffConnection) {
    let client = TcpStream::connect(app.local_addr().expect("addr")).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (server_side, _) = app.accept().expect("accept");
    server_side.set_nonblocking(true).expect("nonblocking");
    let c = HandedOffConnection {
        listener: "web".into(),
        socket: OwnedFd::from(server_side),
        unread: Vec::new(),
        protocol: None,
        layer_state: None,
    };
    (client, c)
}

/// One HTTP/1.1 request on `s`: the status line of the answer.
fn request(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_new_process_that_dies_in_the_window_leaves_the_listener_and_connections_to_the_old() {
    let dir = Dir::new();
    let app = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = app.local_addr().expect("addr");
    let (_gone_client, first) = connection(&app);
    let (mut a, ca) = connection(&app);
    let (mut b, cb) = connection(&app);
    let (go_tx, go_rx) = mpsc::channel();
    let old = Old {
        listener: OwnedFd::from(app.try_clone().expect("dup")),
        first: Mutex::new(Some(first)),
        later: Mutex::new(vec![ca, cb]),
        go: Mutex::new(Some(go_rx)),
    };
    drop(app);

    let taken: Arc<Mutex<Vec<(String, SocketAddr)>>> = Arc::default();
    let started: Arc<Mutex<Option<Server>>> = Arc::default();
    let (taken2, started2) = (taken.clone(), started.clone());
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .on_rollback(move |sockets| {
            for (name, fd) in &sockets {
                taken2.lock().expect("lock").push((name.clone(), local(fd)));
            }
            let yaml = format!(
                "listeners:\n  - name: web\n    address: \"{addr}\"\n    virtual_hosts: []\nclusters: []\n"
            );
            let server = Server::new(Config::from_yaml(&yaml).ok()?, Registry::default())
                .ok()?
                .with_inherited_listeners(sockets);
            let running = server.clone();
            std::thread::spawn(move || running.run_until(std::future::pending()));
            let deadline = Instant::now() + Duration::from_secs(5);
            while server.listener_addresses().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            *started2.lock().expect("lock") = Some(server.clone());
            Some(server)
        })
        .spawn(old)
        .expect("spawn");

    // The new process: takes the sockets, says ready, gets one connection, dies.
    let mut upgrade = client(&path)
        .handoff_window(Duration::from_secs(2))
        .connect()
        .expect("upgrade");
    let sockets = upgrade.take_sockets();
    let mut handover = upgrade.finish_handing_over().expect("finish");
    let got = match handover.next_connection() {
        Ok(Some(c)) => c,
        other => panic!("the first connection: {other:?}"),
    };
    assert_eq!(got.record.listener, "web");
    drop((got, handover, sockets));
    // The old side notices, takes the listener back, then hands out the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    while taken.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "the listener was not taken back");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        *taken.lock().expect("lock"),
        vec![("web".to_string(), addr)]
    );
    go_tx.send(()).expect("go");

    // The connections left are served by the server taken back, on their sockets.
    for s in [&mut a, &mut b] {
        let status = request(s);
        assert!(status.starts_with("HTTP/1.1 "), "{status:?}");
    }
    // And it accepts new ones on the listener.
    let mut fresh = TcpStream::connect(addr).expect("connect");
    fresh
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert!(request(&mut fresh).starts_with("HTTP/1.1 "));
    drop(handle);
    let server = started.lock().expect("lock").take();
    if let Some(server) = server {
        server.shutdown();
    }
}
