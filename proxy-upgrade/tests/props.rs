//! Properties of the wire format: decoding any bytes gives a message or an error,
//! never a panic; decoding an encoded message gives it back.

use proptest::prelude::*;
use proxy_core::{config::ListenAddress, metrics::CarriedValue};
use proxy_upgrade::wire::{
    decode, decode_versioned, encode, encode_version, metrics_messages, ConnectionRecord,
    ErrorCode, ListenerRecord, Message, MAX_UNREAD_BYTES,
};

fn address() -> impl Strategy<Value = ListenAddress> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| ListenAddress::Tcp((ip, port).into())),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| ListenAddress::Tcp((ip, port).into())),
        "/[a-z0-9/._-]{1,100}".prop_map(|p| ListenAddress::Unix(p.into())),
    ]
}

/// A value a hot upgrade carries: any integer, or a finite, non-negative float
/// (a histogram's sum).
fn carried_value() -> impl Strategy<Value = CarriedValue> {
    prop_oneof![
        any::<u64>().prop_map(CarriedValue::Integer),
        (0.0f64..1e15).prop_map(CarriedValue::Float),
        Just(CarriedValue::Float(0.0)),
        Just(CarriedValue::Float(f64::MAX)),
        Just(CarriedValue::Float(f64::MIN_POSITIVE)),
    ]
}

fn samples() -> impl Strategy<Value = Vec<(String, CarriedValue)>> {
    prop::collection::vec(("[^\u{0}]{1,80}", carried_value()), 0..200)
}

fn message() -> impl Strategy<Value = Message> {
    let record = ("[^\u{0}]{1,60}", address(), any::<u16>()).prop_map(|(name, address, worker)| {
        ListenerRecord {
            name,
            address,
            worker,
        }
    });
    prop_oneof![
        any::<u32>().prop_map(|pid| Message::Hello { pid }),
        (prop::collection::vec(record, 0..64), any::<bool>())
            .prop_map(|(records, more)| Message::Listeners { records, more }),
        (any::<u32>(), prop::option::of(1u32..)).prop_map(|(claimed, ms)| Message::Ready {
            claimed,
            handoff_window: ms.map(|ms| std::time::Duration::from_millis(u64::from(ms))),
        }),
        any::<u32>().prop_map(|count| Message::End { count }),
        (
            "[^\u{0}]{1,60}",
            prop::option::of((any::<[u8; 4]>(), any::<u16>())),
            prop::collection::vec(any::<u8>(), 0..2048),
            prop::option::of("[a-z]{1,20}"),
        )
            .prop_map(|(listener, peer, unread, protocol)| Message::Connection(
                ConnectionRecord {
                    listener,
                    peer: peer.map(Into::into),
                    unread: unread[..unread.len().min(MAX_UNREAD_BYTES)].to_vec(),
                    protocol,
                    layer_state: None,
                }
            )),
        (samples(), any::<bool>()).prop_map(|(samples, more)| Message::Metrics { samples, more }),
        Just(Message::Done),
        (1u16..=5, ".{0,200}").prop_map(|(c, reason)| Message::Error {
            code: match c {
                1 => ErrorCode::Busy,
                2 => ErrorCode::Version,
                3 => ErrorCode::Protocol,
                4 => ErrorCode::Internal,
                _ => ErrorCode::Denied,
            },
            reason,
        }),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_a_valid_header(version in 1u8..=6, kind in 0u8..10, flags in 0u8..4, body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"PXUP\x00".to_vec();
        bytes.push(version);
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_of_encode_is_identity(m in message()) {
        let bytes = encode(&m).expect("encode");
        prop_assert_eq!(decode(&bytes).expect("decode"), m.clone());
        // Every proper prefix is refused.
        for cut in [0, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn metrics_go_over_whole_and_an_older_peer_gets_the_integers(samples in samples(), version in 3u16..=6) {
        let mut back = Vec::new();
        for m in metrics_messages(&samples, version) {
            let bytes = encode_version(&m, version).expect("encode");
            match decode_versioned(&bytes).expect("decode") {
                (v, Message::Metrics { samples, .. }) if v == version => back.extend(samples),
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }
        let sent: Vec<_> = samples
            .into_iter()
            .filter(|(_, v)| version >= 6 || matches!(v, CarriedValue::Integer(_)))
            .collect();
        prop_assert_eq!(back, sent);
    }
}
