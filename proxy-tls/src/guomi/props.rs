//! Property tests: the Guomi parsers and record layer never panic on
//! arbitrary bytes, and a certificate altered anywhere is refused.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::cipher::{InboundOpaqueMessage, OutboundChunks, OutboundPlainMessage};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ContentType, ProtocolVersion, SupportedCipherSuite};
use sm2::NonZeroScalar;

use super::kx::ecdh;
use super::sign::{signature_from_der, signature_to_der};
use super::test_pki::{issue, Issued, Spec, SERVER_AUTH};
use super::{Sm2RootStore, Sm2ServerVerifier, TLS13_SM4_CCM_SM3, TLS13_SM4_GCM_SM3};

struct Fixture {
    leaf: Issued,
    verifier: Sm2ServerVerifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = issue(&Spec::ca("Root"), None);
        let leaf = issue(&Spec::leaf("svc", &["svc.example"], SERVER_AUTH), Some(&ca));
        let mut roots = Sm2RootStore::new();
        roots.add(&ca.der).unwrap();
        Fixture {
            leaf,
            verifier: Sm2ServerVerifier::new(Arc::new(roots)),
        }
    })
}

fn verify(der: Vec<u8>) -> Result<(), rustls::Error> {
    let f = fixture();
    f.verifier
        .verify_server_cert(
            &CertificateDer::from(der),
            &[],
            &ServerName::try_from("svc.example").unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

fn aead(suite: SupportedCipherSuite) -> &'static dyn rustls::crypto::cipher::Tls13AeadAlgorithm {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg,
        _ => unreachable!("a TLS 1.3 suite"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn signature_der_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Some(sig) = signature_from_der(&bytes) {
            // Whatever parses re-encodes to a signature that parses the same.
            let again = signature_to_der(&sig).unwrap();
            prop_assert_eq!(signature_from_der(&again), Some(sig));
        }
    }

    #[test]
    fn certificate_verifier_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(verify(bytes).is_err());
    }

    #[test]
    fn any_changed_byte_of_a_certificate_is_refused(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut der = fixture().leaf.der.to_vec();
        let i = pos.index(der.len());
        der[i] ^= flip;
        prop_assert!(verify(der).is_err(), "byte {} changed and still accepted", i);
    }

    #[test]
    fn key_share_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let secret = NonZeroScalar::random(&mut rand_core::OsRng);
        // Random bytes are (overwhelmingly) not a curve point: an error, not a panic.
        let _ = ecdh(&secret, &bytes);
    }

    #[test]
    fn record_decrypt_never_panics_and_round_trips(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        seq in any::<u64>(),
        ccm in any::<bool>(),
    ) {
        let alg = aead(if ccm { TLS13_SM4_CCM_SM3 } else { TLS13_SM4_GCM_SM3 });
        let key = [3u8; 32];
        let mut enc = alg.encrypter(key.into(), [5u8; 12].into());
        let mut dec = alg.decrypter(key.into(), [5u8; 12].into());
        let plain = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_3,
            payload: OutboundChunks::Single(&payload),
        };
        let wire = enc.encrypt(plain, seq).unwrap().encode();
        let mut body = wire[5..].to_vec();
        let msg = InboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, &mut body);
        let opened = dec.decrypt(msg, seq).unwrap();
        prop_assert_eq!(opened.payload, &payload[..]);

        let mut noise = noise;
        let msg = InboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, &mut noise);
        prop_assert!(dec.decrypt(msg, seq).is_err());
    }
}
