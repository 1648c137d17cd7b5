//! Properties of the QUIC-LB codec: round trips in every mode and length, the
//! byte layout, uniqueness across generators, and no panic on arbitrary bytes.

use std::collections::HashSet;

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use proptest::prelude::*;
use proxy_quic::{
    CidFormat, CidKey, ConfigId, Decoded, Decoder, DecoderConfig, Nonce, NonceSpace, QuicLbConfig,
    QuicLbServer, ServerId, Unroutable,
};

/// A format with server ID and nonce lengths in the draft's limits, any config ID,
/// with or without a key and length self-description.
fn format() -> impl Strategy<Value = (CidFormat, Option<[u8; 16]>)> {
    (
        1usize..=15,
        4usize..=18,
        0u8..=6,
        any::<Option<[u8; 16]>>(),
        any::<bool>(),
    )
        .prop_filter("server ID + nonce <= 19", |(s, n, ..)| s + n <= 19)
        .prop_map(|(s, n, cr, key, encodes)| {
            let k = key.map(CidKey::new);
            let f = CidFormat::new(ConfigId::new(cr).expect("cr"), s, n, k.as_ref(), encodes)
                .expect("valid lengths");
            (f, key)
        })
}

fn bytes(len: usize, seed: &[u8]) -> Vec<u8> {
    (0..len)
        .map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(0) ^ (i as u8))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Encode then decode gives back the server ID and nonce, in every mode and for
    /// every length combination; the first octet carries the config ID and, when
    /// asked, the length; plaintext mode copies the fields byte by byte; single-pass
    /// is one AES-128-ECB block.
    #[test]
    fn round_trip((format, key) in format(), seed in prop::collection::vec(any::<u8>(), 1..40), random in any::<u8>()) {
        let sid = ServerId::new(&bytes(format.server_id_len(), &seed)).expect("sid");
        let nonce = Nonce::new(&bytes(format.nonce_len(), &seed[seed.len() / 2..])).expect("nonce");
        let cid = format.encode(&sid, &nonce, random).expect("encode");
        let b = cid.as_bytes();
        prop_assert_eq!(b.len(), 1 + format.server_id_len() + format.nonce_len());
        prop_assert_eq!(b[0] >> 5, format.config_id().get());
        if format.encodes_length() {
            prop_assert_eq!(usize::from(b[0] & 0x1f), b.len() - 1);
        } else {
            prop_assert_eq!(b[0] & 0x1f, random & 0x1f);
        }
        prop_assert_eq!(format.server_id(b), Some(sid));
        prop_assert_eq!(format.decode(b), Some((sid, nonce)));
        let mut decoder = Decoder::new();
        decoder.insert(format.clone());
        prop_assert_eq!(decoder.server_id(b), Some(sid));

        let plain: Vec<u8> = sid.as_bytes().iter().chain(nonce.as_bytes()).copied().collect();
        match key {
            None => prop_assert_eq!(&b[1..], &plain[..]),
            Some(k) if plain.len() == 16 => {
                let mut block = GenericArray::clone_from_slice(&plain);
                aes::Aes128::new(GenericArray::from_slice(&k)).encrypt_block(&mut block);
                prop_assert_eq!(&b[1..], block.as_slice());
            }
            Some(_) => prop_assert_ne!(&b[1..], &plain[..]),
        }
    }

    /// Decoding arbitrary bytes never panics, under any set of configs; a routable
    /// answer only comes from a known config ID.
    #[test]
    fn decode_never_panics(formats in prop::collection::vec(format(), 0..7), data in prop::collection::vec(any::<u8>(), 0..48)) {
        let mut decoder = Decoder::new();
        for (f, _) in &formats {
            let _ = f.server_id(&data);
            let _ = f.decode(&data);
            decoder.insert(f.clone());
        }
        match decoder.decode(&data) {
            Decoded::Routable { config_id, .. } => {
                prop_assert_eq!(Some(config_id), ConfigId::of_first_octet(data[0]));
                prop_assert!(decoder.format(config_id).is_some());
            }
            Decoded::Unroutable(Unroutable::Empty) => prop_assert!(data.is_empty()),
            Decoded::Unroutable(Unroutable::Reserved) => prop_assert_eq!(data[0] >> 5, 0b111),
            Decoded::Unroutable(_) => {}
        }
    }

    /// Config text of any shape never panics the parsers or the validation.
    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,80}", sid in "[0-9a-fA-Fx]{0,34}", n in any::<u8>(), cr in any::<u8>()) {
        let _ = serde_json::from_str::<QuicLbConfig>(&text);
        let _ = serde_json::from_str::<DecoderConfig>(&text);
        let _ = ServerId::from_hex(&sid);
        let _ = CidKey::from_hex(&sid);
        let json = format!(r#"{{"config_id": {cr}, "server_id": "{sid}", "nonce_length": {n}}}"#);
        if let Ok(c) = serde_json::from_str::<QuicLbConfig>(&json) {
            let _ = QuicLbServer::try_from(&c);
        }
    }

    /// Four-pass encryption is a permutation of the (server ID, nonce) space: on a
    /// sample of distinct plaintexts, the ciphertexts are distinct and differ from
    /// the plaintexts.
    #[test]
    fn four_pass_is_a_permutation_on_a_sample(sid_len in 1usize..=15, nonce_len in 4usize..=18, key in any::<[u8; 16]>()) {
        prop_assume!(sid_len + nonce_len <= 19 && sid_len + nonce_len != 16);
        let key = CidKey::new(key);
        let f = CidFormat::new(ConfigId::new(0).expect("cr"), sid_len, nonce_len, Some(&key), false).expect("format");
        let sid = ServerId::new(&vec![0xa5; sid_len]).expect("sid");
        let mut seen = HashSet::new();
        for i in 0u32..64 {
            let mut n = vec![0u8; nonce_len];
            n[nonce_len - 4..].copy_from_slice(&i.to_be_bytes());
            let nonce = Nonce::new(&n).expect("nonce");
            let cid = f.encode(&sid, &nonce, 0).expect("encode");
            prop_assert!(seen.insert(cid.as_bytes()[1..].to_vec()));
            prop_assert_eq!(f.decode(cid.as_bytes()), Some((sid, nonce)));
        }
    }
}

/// Generators of disjoint nonce spaces (two processes of four workers) never issue
/// the same connection ID, and every one decodes to the server ID, in each mode.
#[test]
fn generators_of_disjoint_spaces_never_collide() {
    for (nonce_length, key) in [
        (4, None),
        (4, Some(CidKey::new([1; 16]))),
        (13, Some(CidKey::new([2; 16]))), // single pass: 3 + 13 = 16
        (16, Some(CidKey::new([3; 16]))), // more than 128 nonce bits: filler
    ] {
        let config = QuicLbConfig {
            config_id: ConfigId::new(2).expect("cr"),
            server_id: ServerId::from_hex("0a0b0c").expect("sid"),
            nonce_length,
            cid_key: key,
            first_octet_encodes_cid_length: false,
        };
        let server = QuicLbServer::try_from(&config).expect("server");
        let mut seen = HashSet::new();
        for process in 0..2 {
            let space = NonceSpace::new(process, 2).expect("space");
            for worker in 0..4 {
                let space = space.split(worker, 4).expect("split");
                let mut g = server.generator(space).expect("generator");
                for _ in 0..5_000 {
                    let cid = g.next_cid();
                    let (sid, nonce) = server.format().decode(cid.as_bytes()).expect("decodes");
                    assert_eq!(sid, server.server_id());
                    // The nonce's top three bits are the worker's part of eight.
                    assert_eq!(u32::from(nonce.as_bytes()[0] >> 5), space.index());
                    assert!(seen.insert(cid.as_bytes()[1..].to_vec()), "duplicate {cid}");
                }
            }
        }
    }
}

/// Consecutive nonces of one generator do not count up: the counter is whitened.
#[test]
fn plaintext_nonces_are_not_sequential() {
    let config = QuicLbConfig {
        config_id: ConfigId::new(0).expect("cr"),
        server_id: ServerId::from_hex("01").expect("sid"),
        nonce_length: 8,
        cid_key: None,
        first_octet_encodes_cid_length: true,
    };
    let server = QuicLbServer::try_from(&config).expect("server");
    let mut g = server.generator(NonceSpace::WHOLE).expect("generator");
    let nonces: Vec<u64> = (0..100)
        .map(|_| {
            let cid = g.next_cid();
            u64::from_be_bytes(cid.as_bytes()[2..10].try_into().expect("8 octets"))
        })
        .collect();
    let steps_of_one = nonces
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(steps_of_one < 3, "{steps_of_one} sequential nonces");
}
