//! Unit tests of the wire format: round trips, and every kind of bad input giving its
//! error rather than a panic.

use super::*;

fn record(name: &str, address: &str, worker: u16) -> ListenerRecord {
    ListenerRecord {
        name: name.into(),
        address: ListenAddress::try_from(address.to_string()).expect("address"),
        worker,
    }
}

fn connection(listener: &str, peer: Option<&str>, unread: &[u8]) -> ConnectionRecord {
    ConnectionRecord {
        listener: listener.into(),
        peer: peer.map(|p| p.parse().expect("peer")),
        unread: unread.to_vec(),
        protocol: None,
        layer_state: None,
    }
}

/// `good` cut anywhere inside its payload, the header's length fixed up to agree:
/// the fields run out, which is an error (not a panic).
fn assert_every_cut_refused(good: &[u8]) {
    for cut in HEADER_BYTES..good.len() {
        let mut bytes = good[..cut].to_vec();
        let len = (cut - HEADER_BYTES) as u32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(
            matches!(
                decode(&bytes),
                Err(UpgradeError::Truncated(_) | UpgradeError::Malformed(_))
            ),
            "cut at {cut}"
        );
    }
}

fn round_trip(m: Message) {
    let bytes = encode(&m).expect("encode");
    assert_eq!(decode(&bytes).expect("decode"), m);
}

#[test]
fn every_message_round_trips() {
    round_trip(Message::Hello { pid: 4242 });
    round_trip(Message::Ready {
        claimed: 7,
        handoff_window: None,
    });
    round_trip(Message::Ready {
        claimed: 7,
        handoff_window: Some(Duration::from_millis(2500)),
    });
    round_trip(Message::End { count: 12 });
    round_trip(Message::Connection(connection(
        "inbound",
        Some("10.1.2.3:40000"),
        b"GET / HT",
    )));
    round_trip(Message::Connection(connection("app", None, b"")));
    round_trip(Message::Connection(connection(
        "v6",
        Some("[::1]:1"),
        &[0xab; MAX_UNREAD_BYTES],
    )));
    round_trip(Message::Done);
    round_trip(Message::Error {
        code: ErrorCode::Busy,
        reason: "another upgrade is in progress".into(),
    });
    round_trip(Message::Error {
        code: ErrorCode::Other(999),
        reason: String::new(),
    });
    round_trip(Message::Listeners {
        records: vec![
            record("inbound", "127.0.0.1:15006", 0),
            record("inbound", "127.0.0.1:15006", 1),
            record("v6", "[::1]:8080", 0),
            record("app", "unix:/run/app.sock", 0),
        ],
        more: true,
    });
    round_trip(Message::Listeners {
        records: Vec::new(),
        more: false,
    });
}

#[test]
fn header_layout_is_fixed() {
    let bytes = encode(&Message::Hello { pid: 1 }).expect("encode");
    assert_eq!(
        bytes,
        [b'P', b'X', b'U', b'P', 0, 6, 1, 0, 0, 0, 0, 4, 0, 0, 0, 1]
    );
    let bytes = encode(&Message::Listeners {
        records: vec![record("a", "unix:/s", 3)],
        more: true,
    })
    .expect("encode");
    assert_eq!(&bytes[6..8], &[2, FLAG_MORE]);
    // count, kind, worker, name, address
    assert_eq!(&bytes[12..], &[0, 1, 2, 0, 3, 0, 1, b'a', 0, 2, b'/', b's']);
}

#[test]
fn garbage_is_malformed() {
    for bytes in [
        &b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..],
        &[0u8; 64][..],
        b"XXXX",
    ] {
        assert!(
            matches!(decode(bytes), Err(UpgradeError::Malformed(_))),
            "{bytes:?}: {:?}",
            decode(bytes)
        );
    }
}

#[test]
fn truncated_messages_are_refused() {
    let bytes = encode(&Message::Listeners {
        records: vec![record("web", "127.0.0.1:80", 0)],
        more: false,
    })
    .expect("encode");
    for cut in 0..bytes.len() {
        let e = decode(&bytes[..cut]).expect_err("a cut message");
        assert!(
            matches!(e, UpgradeError::Truncated(_)),
            "cut at {cut}: {e:?}"
        );
    }
    // A header that claims more than the limit.
    let mut huge = bytes[..HEADER_BYTES].to_vec();
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&huge), Err(UpgradeError::Truncated(_))));
}

#[test]
fn a_record_cut_inside_a_whole_message_is_truncated() {
    // The header's length matches, but the count promises two records.
    let mut bytes = encode(&Message::Listeners {
        records: vec![record("web", "127.0.0.1:80", 0)],
        more: false,
    })
    .expect("encode");
    bytes[13] = 2;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Truncated(_))));
}

#[test]
fn bytes_after_the_payload_are_malformed() {
    let mut bytes = encode(&Message::Done).expect("encode");
    bytes.push(0);
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // Declared, but not part of the message.
    let mut bytes = encode(&Message::Ready {
        claimed: 1,
        handoff_window: None,
    })
    .expect("encode");
    bytes[11] = 9;
    bytes.push(0);
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

#[test]
fn another_version_is_a_version_mismatch() {
    let mut bytes = encode(&Message::Hello { pid: 1 }).expect("encode");
    bytes[5] = 7;
    match decode(&bytes) {
        Err(UpgradeError::VersionMismatch { ours, theirs }) => {
            assert_eq!((ours, theirs), (VERSION, 7));
        }
        other => panic!("{other:?}"),
    }
    // Checked before anything else in the message.
    let mut bytes = vec![b'P', b'X', b'U', b'P', 0, 9, 200, 255];
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(
        decode(&bytes),
        Err(UpgradeError::VersionMismatch { theirs: 9, .. })
    ));
}

#[test]
fn unknown_kinds_flags_and_fields_are_malformed() {
    let mut bytes = encode(&Message::Done).expect("encode");
    bytes[6] = 99;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let mut bytes = encode(&Message::Done).expect("encode");
    bytes[7] = FLAG_MORE;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let good = encode(&Message::Listeners {
        records: vec![record("web", "127.0.0.1:80", 0)],
        more: false,
    })
    .expect("encode");
    // Socket kind 3 (UDP) is reserved, 9 unknown.
    for kind in [0u8, 3, 9] {
        let mut bytes = good.clone();
        bytes[14] = kind;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    }
    // A name that is not UTF-8; an address that does not parse.
    let mut bytes = good.clone();
    bytes[19] = 0xff;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let mut bytes = good;
    let last = bytes.len() - 1;
    bytes[last] = b'x';
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

#[test]
fn descriptor_and_size_limits() {
    let many: Vec<_> = (0..=MAX_FDS_PER_MESSAGE as u16)
        .map(|w| record("web", "127.0.0.1:80", w))
        .collect();
    assert!(encode(&Message::Listeners {
        records: many[..MAX_FDS_PER_MESSAGE].to_vec(),
        more: false,
    })
    .is_ok());
    assert!(matches!(
        encode(&Message::Listeners {
            records: many.clone(),
            more: false
        }),
        Err(UpgradeError::Malformed(_))
    ));
    // A count over the limit on the wire.
    let mut bytes = encode(&Message::Listeners {
        records: Vec::new(),
        more: false,
    })
    .expect("encode");
    bytes[12..14].copy_from_slice(&(MAX_FDS_PER_MESSAGE as u16 + 1).to_be_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(UpgradeError::TooManyDescriptors { .. })
    ));
    // Names: empty and too long are refused both ways.
    for name in [String::new(), "n".repeat(MAX_NAME_BYTES + 1)] {
        let m = Message::Listeners {
            records: vec![ListenerRecord {
                name,
                address: ListenAddress::Tcp("127.0.0.1:1".parse().expect("addr")),
                worker: 0,
            }],
            more: false,
        };
        assert!(encode(&m).is_err());
    }
    // A long error reason is cut at a character boundary.
    let reason = "é".repeat(MAX_REASON_BYTES);
    let bytes = encode(&Message::Error {
        code: ErrorCode::Internal,
        reason,
    })
    .expect("encode");
    match decode(&bytes) {
        Ok(Message::Error { reason, .. }) => assert!(reason.len() <= MAX_REASON_BYTES),
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_1_messages_still_decode_and_have_no_connections() {
    let ready = Message::Ready {
        claimed: 3,
        handoff_window: None,
    };
    let bytes = encode_version(&ready, 1).expect("encode");
    assert_eq!(&bytes[4..6], &[0, 1]);
    // Version 1's ready is 4 bytes: no window.
    assert_eq!(bytes.len(), HEADER_BYTES + 4);
    assert_eq!(decode_versioned(&bytes).expect("decode"), (1, ready));
    for m in [
        Message::End { count: 1 },
        Message::Connection(connection("a", None, b"")),
        Message::Ready {
            claimed: 1,
            handoff_window: Some(Duration::from_secs(1)),
        },
    ] {
        assert!(matches!(
            encode_version(&m, 1),
            Err(UpgradeError::Malformed(_))
        ));
    }
    assert!(matches!(
        encode_version(&Message::Done, 0),
        Err(UpgradeError::Malformed(_))
    ));
    // A version 2 kind under a version 1 header is unknown there.
    let mut bytes = encode(&Message::End { count: 0 }).expect("encode");
    bytes[5] = 1;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

#[test]
fn a_window_of_zero_is_none_and_a_huge_one_saturates() {
    let mut bytes = encode(&Message::Ready {
        claimed: 1,
        handoff_window: Some(Duration::from_secs(1)),
    })
    .expect("encode");
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        decode(&bytes).expect("decode"),
        Message::Ready {
            claimed: 1,
            handoff_window: None
        }
    );
    let bytes = encode(&Message::Ready {
        claimed: 1,
        handoff_window: Some(Duration::from_secs(u64::MAX / 2)),
    })
    .expect("encode");
    assert_eq!(
        decode(&bytes).expect("decode"),
        Message::Ready {
            claimed: 1,
            handoff_window: Some(Duration::from_millis(u64::from(u32::MAX)))
        }
    );
}

#[test]
fn connection_limits_are_enforced_both_ways() {
    let over = connection("a", None, &vec![0; MAX_UNREAD_BYTES + 1]);
    assert!(matches!(
        encode(&Message::Connection(over)),
        Err(UpgradeError::Malformed(_))
    ));
    for name in [String::new(), "n".repeat(MAX_NAME_BYTES + 1)] {
        let c = ConnectionRecord {
            listener: name,
            peer: None,
            unread: Vec::new(),
            protocol: None,
            layer_state: None,
        };
        assert!(matches!(
            encode(&Message::Connection(c)),
            Err(UpgradeError::Malformed(_))
        ));
    }
    // A declared unread length over the limit, in an otherwise whole message.
    let good = encode(&Message::Connection(connection("a", None, b"xy"))).expect("encode");
    // header, kind, name_len, "a", peer_len, unread_len
    let at = HEADER_BYTES + 1 + 2 + 1 + 2;
    let mut bytes = good.clone();
    bytes[at..at + 4].copy_from_slice(&((MAX_UNREAD_BYTES + 1) as u32).to_be_bytes());
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // More unread bytes declared than sent: truncated.
    let mut bytes = good.clone();
    bytes[at + 3] = 3;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Truncated(_))));
}

#[test]
fn connection_truncated_anywhere_is_an_error() {
    let good = encode(&Message::Connection(connection(
        "web",
        Some("127.0.0.1:5000"),
        b"GET /",
    )))
    .expect("encode");
    assert_every_cut_refused(&good);
    // A header that promises the whole payload: truncated.
    for cut in HEADER_BYTES..good.len() {
        assert!(matches!(
            decode(&good[..cut]),
            Err(UpgradeError::Truncated(_))
        ));
    }
}

#[test]
fn connection_garbage_is_malformed() {
    let good = encode(&Message::Connection(connection(
        "web",
        Some("127.0.0.1:5000"),
        b"",
    )))
    .expect("encode");
    let kind_at = HEADER_BYTES;
    // Unknown kind; Unix with a peer; TCP with a peer that is no address.
    for kind in [0u8, 3, 200] {
        let mut bytes = good.clone();
        bytes[kind_at] = kind;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    }
    let mut bytes = good.clone();
    bytes[kind_at] = 2;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let tcp_without_peer =
        encode(&Message::Connection(connection("web", None, b""))).expect("encode");
    let mut bytes = tcp_without_peer;
    bytes[kind_at] = 1;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // A name that is not UTF-8.
    let mut bytes = good.clone();
    bytes[kind_at + 3] = 0xff;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // Flags are for listeners only; bytes after the record.
    let mut bytes = good.clone();
    bytes[7] = FLAG_MORE;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let mut bytes = good;
    bytes.push(0);
    let n = (bytes.len() - HEADER_BYTES) as u32;
    bytes[8..12].copy_from_slice(&n.to_be_bytes());
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

fn udp(name: &str, address: &str, worker: u16, role: DatagramRole) -> DatagramRecord {
    DatagramRecord {
        name: name.into(),
        address: address.parse().expect("address"),
        worker,
        role,
    }
}

#[test]
fn datagram_sockets_round_trip() {
    round_trip(Message::Datagrams {
        records: Vec::new(),
        more: false,
    });
    round_trip(Message::Datagrams {
        records: vec![
            udp("h3", "0.0.0.0:443", 0, DatagramRole::Udp),
            udp(
                "h3",
                "0.0.0.0:443",
                0,
                DatagramRole::Forward { generation: 1 },
            ),
            udp("h3", "[::1]:8443", 1, DatagramRole::Udp),
            udp(
                "h3",
                "[::1]:8443",
                1,
                DatagramRole::Forward { generation: 0 },
            ),
        ],
        more: true,
    });
    // The record layout: kind 3, worker, generation, name, address.
    let bytes = encode(&Message::Datagrams {
        records: vec![udp("q", "127.0.0.1:1", 2, DatagramRole::Udp)],
        more: false,
    })
    .expect("encode");
    assert_eq!(&bytes[4..6], &VERSION.to_be_bytes());
    assert_eq!(&bytes[6..8], &[9, 0]);
    assert_eq!(
        &bytes[HEADER_BYTES..],
        b"\x00\x01\x03\x00\x02\x00\x00\x01q\x00\x0b127.0.0.1:1"
    );
}

#[test]
fn datagram_messages_are_version_4_only() {
    let m = Message::Datagrams {
        records: Vec::new(),
        more: false,
    };
    assert!(matches!(
        encode_version(&m, 3),
        Err(UpgradeError::Malformed(_))
    ));
    // A version 3 message of kind 9 does not exist.
    let mut bytes = encode(&m).expect("encode");
    bytes[5] = 3;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

#[test]
fn malformed_datagram_records_are_refused() {
    let good = encode(&Message::Datagrams {
        records: vec![udp(
            "q",
            "127.0.0.1:1",
            0,
            DatagramRole::Forward { generation: 1 },
        )],
        more: false,
    })
    .expect("encode");
    let at = HEADER_BYTES + 2;
    // Kind 1 (a TCP listener) or 9 is not a datagram socket.
    for kind in [1u8, 2, 5, 9] {
        let mut bytes = good.clone();
        bytes[at] = kind;
        assert!(
            matches!(decode(&bytes), Err(UpgradeError::Malformed(ref why)) if why.contains("kind")),
            "kind {kind}"
        );
    }
    // A generation other than 0 and 1; a UDP socket with one.
    let mut bytes = good.clone();
    bytes[at + 3] = 2;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    let mut bytes = good.clone();
    bytes[at] = 3;
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // A Unix path or garbage where the UDP address goes.
    let mut bytes = good.clone();
    let addr = bytes.len() - "127.0.0.1:1".len();
    bytes[addr..].copy_from_slice(b"unix:/x.soc");
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
    // Cut anywhere inside the payload (length fixed up): an error.
    assert_every_cut_refused(&good);
    // More records than descriptors may travel.
    let mut bytes = good.clone();
    bytes[HEADER_BYTES..HEADER_BYTES + 2].copy_from_slice(&65u16.to_be_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(UpgradeError::TooManyDescriptors { got: 65, .. })
    ));
    // Encoding refuses what decoding would.
    let bad = Message::Datagrams {
        records: vec![udp(
            "q",
            "127.0.0.1:1",
            0,
            DatagramRole::Forward { generation: 7 },
        )],
        more: false,
    };
    assert!(matches!(encode(&bad), Err(UpgradeError::Malformed(_))));
    let unnamed = Message::Datagrams {
        records: vec![udp("", "127.0.0.1:1", 0, DatagramRole::Udp)],
        more: false,
    };
    assert!(matches!(encode(&unnamed), Err(UpgradeError::Malformed(_))));
}
