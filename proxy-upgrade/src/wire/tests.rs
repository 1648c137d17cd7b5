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

fn round_trip(m: Message) {
    let bytes = encode(&m).expect("encode");
    assert_eq!(decode(&bytes).expect("decode"), m);
}

#[test]
fn every_message_round_trips() {
    round_trip(Message::Hello { pid: 4242 });
    round_trip(Message::Ready { claimed: 7 });
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
        [b'P', b'X', b'U', b'P', 0, 1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 1]
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
    let mut bytes = encode(&Message::Ready { claimed: 1 }).expect("encode");
    bytes[11] = 5;
    bytes.push(0);
    assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
}

#[test]
fn another_version_is_a_version_mismatch() {
    let mut bytes = encode(&Message::Hello { pid: 1 }).expect("encode");
    bytes[5] = 2;
    match decode(&bytes) {
        Err(UpgradeError::VersionMismatch { ours, theirs }) => {
            assert_eq!((ours, theirs), (VERSION, 2));
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
