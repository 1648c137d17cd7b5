//! The protocol on real sockets: an `UpgradeServer` over a fake old process's
//! listeners and an `UpgradeClient`: the round trip, busy refusal, an abandoned
//! upgrade, the socket file's life.

use crate::common;

use std::{
    net::{TcpListener, TcpStream},
    sync::atomic::Ordering,
    time::Duration,
};

use common::*;
use proxy_core::config::ListenAddress;
use proxy_upgrade::{UpgradeError, UpgradeServer};

#[test]
fn listeners_round_trip_and_the_old_process_is_told_to_hand_off() {
    let dir = Dir::new();
    let (old, addr) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let mut upgrade = client(&path).connect().expect("upgrade");
    let mut got: Vec<_> = upgrade
        .listeners()
        .iter()
        .map(|l| {
            (
                l.record.name.clone(),
                l.record.worker,
                l.record.address.clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        got,
        vec![
            ("uds".into(), 0, ListenAddress::Unix(dir.join("app.sock"))),
            ("web".into(), 0, ListenAddress::Tcp(addr)),
            ("web".into(), 1, ListenAddress::Tcp(addr)),
        ]
    );
    assert!(upgrade.listeners().iter().all(|l| cloexec(&l.socket)));
    let sockets = upgrade.take_sockets();
    let names: Vec<_> = sockets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["uds", "web", "web"]);

    // The received sockets are the old ones: a connection made now is accepted on them.
    let _client = TcpStream::connect(addr).expect("connect");
    let web: Vec<TcpListener> = sockets
        .into_iter()
        .filter(|(n, _)| n == "web")
        .map(|(_, fd)| TcpListener::from(fd))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    'accepted: loop {
        for l in &web {
            l.set_nonblocking(true).expect("nonblocking");
            if l.accept().is_ok() {
                break 'accepted;
            }
        }
        assert!(std::time::Instant::now() < deadline, "nothing accepted");
        std::thread::sleep(Duration::from_millis(10));
    }

    assert!(!old.handed_off.load(Ordering::SeqCst), "not before ready");
    upgrade.finish().expect("done");
    assert!(old.handed_off.load(Ordering::SeqCst));
    assert!(!path.exists(), "the path is left to the new process");
    // The service stops by itself after a hand-off.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !handle.handed_off() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
}

#[test]
fn a_second_upgrade_meanwhile_is_refused_as_busy_and_an_abandoned_one_changes_nothing() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let _handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let first = client(&path).connect().expect("first upgrade");
    let second = client(&path).connect().expect_err("a second one meanwhile");
    assert!(second.is_busy(), "{second}");
    assert!(
        second
            .to_string()
            .contains("another upgrade is in progress"),
        "{second}"
    );

    // The first new process goes away without saying ready: nothing changes.
    drop(first);
    let third = connect_when_free(&client(&path));
    assert!(!old.handed_off.load(Ordering::SeqCst));
    assert_eq!(third.listeners().len(), 3);
}

#[test]
fn a_stopped_service_removes_its_socket_and_a_stale_file_is_replaced() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let busy = UpgradeServer::bind(&path).expect_err("a live socket is not replaced");
    assert!(matches!(busy, UpgradeError::Bind { .. }), "{busy}");
    handle.stop();
    assert!(!path.exists());
    let e = client(&path).connect().expect_err("nobody there");
    assert!(matches!(e, UpgradeError::Connect { .. }), "{e}");
    // A file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let _again = UpgradeServer::bind(&path).expect("replaces a stale file");
}
