//! Peers that break the protocol on purpose, on real sockets: garbage, truncation,
//! another version, a message out of turn (to the old process's service), and too
//! many descriptors, records and descriptors that disagree, sockets that are not what
//! their records say (to the new process's client). Each gets its error, never a
//! panic, and the side that got it keeps what it had.

use crate::common;

use std::{
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use common::*;
use proxy_core::config::ListenAddress;
use proxy_upgrade::{
    wire::{self, ErrorCode, ListenerRecord, Message},
    UpgradeClient, UpgradeError, UpgradeServer,
};

/// Sends `bytes` as a new process would, and returns the old process's answer.
fn answer_to(bytes: &[u8]) -> (Message, Arc<AtomicBool>, UpgradeClient, Dir) {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let fd = raw_connect(&path);
    raw_send(&fd, bytes, &[]);
    let (reply, fds) = raw_recv(&fd);
    assert_eq!(fds, 0, "no socket goes to a peer that broke the protocol");
    // Leak the service into the returned client's lifetime: it still serves.
    std::mem::forget(handle);
    (
        wire::decode(&reply).expect("a well-formed answer"),
        old.handed_off,
        client(&path),
        dir,
    )
}

fn assert_refused(m: &Message, want: ErrorCode, text: &str) {
    match m {
        Message::Error { code, reason } => {
            assert_eq!(*code, want, "{reason}");
            assert!(reason.contains(text), "{reason:?} lacks {text:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn garbage_gets_a_protocol_error_and_the_service_keeps_serving() {
    let (m, handed_off, next, _dir) = answer_to(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_refused(&m, ErrorCode::Protocol, "bad magic");
    assert!(!handed_off.load(Ordering::SeqCst));
    let upgrade = connect_when_free(&next);
    assert_eq!(upgrade.listeners().len(), 3);
}

#[test]
fn a_truncated_hello_gets_a_protocol_error() {
    let hello = wire::encode(&Message::Hello { pid: 1 }).expect("encode");
    let (m, ..) = answer_to(&hello[..hello.len() - 2]);
    assert_refused(&m, ErrorCode::Protocol, "truncated");
}

#[test]
fn another_version_is_refused_naming_ours() {
    let mut hello = wire::encode(&Message::Hello { pid: 1 }).expect("encode");
    hello[5] = 7;
    let (m, ..) = answer_to(&hello);
    assert_refused(&m, ErrorCode::Version, "this process speaks version 6");
}

#[test]
fn a_message_out_of_turn_gets_a_protocol_error() {
    let ready = Message::Ready {
        claimed: 1,
        handoff_window: None,
    };
    let (m, ..) = answer_to(&wire::encode(&ready).expect("encode"));
    assert_refused(&m, ErrorCode::Protocol, "unexpected ready");
}

/// A fake old process that answers the hello with `bytes` and `fds`; returns what the
/// client made of it.
fn client_given(bytes: Vec<u8>, fds: Vec<OwnedFd>) -> UpgradeError {
    let dir = Dir::new();
    let (path, old) = raw_old_process(&dir, move |conn| {
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        raw_send(&conn, &bytes, &borrowed);
        // Keep the connection open until the client is done with it.
        let _ = raw_recv(&conn);
    });
    let e = client(&path).connect().expect_err("the client refuses");
    let _ = old.join();
    e
}

fn listeners_message(records: Vec<ListenerRecord>) -> Vec<u8> {
    let mut out = wire::encode(&Message::Listeners {
        records: Vec::new(),
        more: false,
    })
    .expect("encode");
    // Encode the records by hand so that more than the limit can be sent.
    out.truncate(wire::HEADER_BYTES);
    let mut payload = (records.len() as u16).to_be_bytes().to_vec();
    for r in &records {
        let one = wire::encode(&Message::Listeners {
            records: vec![r.clone()],
            more: false,
        })
        .expect("encode");
        payload.extend_from_slice(&one[wire::HEADER_BYTES + 2..]);
    }
    out[8..12].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn web(worker: u16, addr: SocketAddr) -> ListenerRecord {
    ListenerRecord {
        name: "web".into(),
        address: ListenAddress::Tcp(addr),
        worker,
    }
}

#[test]
fn too_many_descriptors_in_a_message_are_refused_and_closed() {
    let fds: Vec<OwnedFd> = (0..=wire::MAX_FDS_PER_MESSAGE)
        .map(|_| tcp_listener(0))
        .collect();
    let records = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| web(i as u16, local(fd)))
        .collect();
    let e = client_given(listeners_message(records), fds);
    assert!(matches!(e, UpgradeError::TooManyDescriptors { .. }), "{e}");
}

#[test]
fn records_and_descriptors_must_agree() {
    let fd = tcp_listener(0);
    let records = vec![web(0, local(&fd)), web(1, local(&fd))];
    let e = client_given(listeners_message(records), vec![fd]);
    assert!(
        matches!(e, UpgradeError::Malformed(ref m) if m.contains("2 listener records with 1 descriptors")),
        "{e}"
    );
}

#[test]
fn a_socket_that_is_not_what_its_record_says_is_refused() {
    // Bound elsewhere than its record says.
    let fd = tcp_listener(0);
    let elsewhere = local(&tcp_listener(0));
    let e = client_given(listeners_message(vec![web(0, elsewhere)]), vec![fd]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("bound to")),
        "{e}"
    );
    // Not listening.
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("addr");
    let e = client_given(listeners_message(vec![web(0, addr)]), vec![s.into()]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("not listening")),
        "{e}"
    );
    // Twice the same worker.
    let a = tcp_listener(0);
    let b = tcp_listener(local(&a).port());
    let records = vec![web(0, local(&a)), web(0, local(&a))];
    let e = client_given(listeners_message(records), vec![a, b]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("twice")),
        "{e}"
    );
}

#[test]
fn garbage_from_the_old_process_is_an_error_not_a_panic() {
    for bytes in [
        b"\x00".to_vec(),
        vec![0xff; 100],
        b"PXUP\x00\x01\x02\x00\x00\x00\x00\x09abc".to_vec(),
    ] {
        let e = client_given(bytes, Vec::new());
        assert!(
            matches!(e, UpgradeError::Malformed(_) | UpgradeError::Truncated(_)),
            "{e}"
        );
    }
    let e = client_given(
        wire::encode(&Message::Error {
            code: ErrorCode::Internal,
            reason: "out of descriptors".into(),
        })
        .expect("encode"),
        Vec::new(),
    );
    assert!(
        matches!(e, UpgradeError::Refused { .. }) && e.to_string().contains("out of descriptors"),
        "{e}"
    );
}
