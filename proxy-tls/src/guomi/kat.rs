//! Known-answer tests from the standards (GB/T 32905 SM3, GB/T 32907 SM4,
//! GB/T 32918.5 / GM/T 0003.5 SM2, RFC 8998 appendix A SM4-GCM/CCM) and
//! checks of the RustCrypto crates' behaviour against independent
//! constructions (HMAC and HKDF built by hand from SM3).

use rustls::crypto::cipher::{InboundOpaqueMessage, OutboundChunks, OutboundPlainMessage};
use rustls::crypto::{hash::Hash, hmac::Hmac};
use rustls::{ContentType, ProtocolVersion};
use sm2::dsa::signature::{Signer, Verifier};
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use sm2::elliptic_curve::PrimeField;
use sm2::{FieldBytes, NonZeroScalar, ProjectivePoint, Scalar, SecretKey};
use sm3::{Digest, Sm3};
use sm4::cipher::{BlockEncrypt, KeyInit};

use super::kx::ecdh;
use super::sign::{signature_from_der, signature_to_der};
use super::suites::{sm3_hash, Sm4Cipher, HMAC_SM3, SM3};
use super::{CERT_SM2_ID, TLS13_SM2_ID};

fn h(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// --- SM3, GB/T 32905-2016 appendix A ---

#[test]
fn sm3_abc() {
    let want = h("66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0");
    assert_eq!(sm3_hash(b"abc").to_vec(), want);
    assert_eq!(SM3.hash(b"abc").as_ref(), want.as_slice());
}

#[test]
fn sm3_512_bit_message() {
    let msg = b"abcd".repeat(16);
    let want = h("debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732");
    assert_eq!(sm3_hash(&msg).to_vec(), want);
    // The incremental context gives the same digest, and fork_finish does not disturb it.
    let mut ctx = SM3.start();
    ctx.update(&msg[..5]);
    let _ = ctx.fork_finish();
    ctx.update(&msg[5..]);
    assert_eq!(ctx.finish().as_ref(), want.as_slice());
}

// --- SM4, GB/T 32907-2016 appendix A ---

#[test]
fn sm4_block_example_1() {
    let key = h("0123456789abcdeffedcba9876543210");
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = sm4::cipher::generic_array::GenericArray::clone_from_slice(&key);
    cipher.encrypt_block(&mut block);
    assert_eq!(block.to_vec(), h("681edf34d206965e86b3e94f536e4246"));
}

#[test]
fn sm4_block_example_2_million_iterations() {
    let key = h("0123456789abcdeffedcba9876543210");
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = sm4::cipher::generic_array::GenericArray::clone_from_slice(&key);
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(block.to_vec(), h("595298c7c6fd271f0402f804c33d3f66"));
}

// --- SM4-GCM and SM4-CCM, RFC 8998 appendix A ---

const RFC8998_KEY: &str = "0123456789ABCDEFFEDCBA9876543210";
const RFC8998_IV: &str = "00001234567800000000ABCD";
const RFC8998_AAD: &str = "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2";
const RFC8998_PT: &str = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
                          EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA";

fn rfc8998_case(cipher: Sm4Cipher, ct: &str, tag: &str) {
    let iv: [u8; 12] = h(RFC8998_IV).try_into().unwrap();
    let aad = h(RFC8998_AAD);
    let mut buf = h(RFC8998_PT);
    cipher.seal(&iv, &aad, &mut buf).unwrap();
    let mut want = h(ct);
    want.extend(h(tag));
    assert_eq!(buf, want);

    cipher.open(&iv, &aad, &mut buf).unwrap();
    assert_eq!(buf, h(RFC8998_PT));

    // One flipped bit anywhere, in the text, the tag or the AAD, is refused.
    let mut bad = want.clone();
    bad[3] ^= 1;
    assert!(cipher.open(&iv, &aad, &mut bad).is_err());
    let mut bad = want.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    assert!(cipher.open(&iv, &aad, &mut bad).is_err());
    let mut bad_aad = aad.clone();
    bad_aad[0] ^= 1;
    let mut copy = want.clone();
    assert!(cipher.open(&iv, &bad_aad, &mut copy).is_err());
}

#[test]
fn sm4_gcm_rfc8998_a1() {
    let key: [u8; 16] = h(RFC8998_KEY).try_into().unwrap();
    rfc8998_case(
        Sm4Cipher::gcm(&key),
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
         D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
        "83DE3541E4C2B58177E065A9BF7B62EC",
    );
}

#[test]
fn sm4_ccm_rfc8998_a2() {
    let key: [u8; 16] = h(RFC8998_KEY).try_into().unwrap();
    rfc8998_case(
        Sm4Cipher::ccm(&key),
        "48AF93501FA62ADBCD414CCE6034D895DDA1BF8F132F042098661572E7483094\
         FD12E518CE062C98ACEE28D95DF4416BED31A2F04476C18BB40C84A74B97DC5B",
        "16842D4FA186F56AB33256971FA110F4",
    );
}

// --- SM2, GB/T 32918.5-2017 / GM/T 0003.5-2012 example on sm2p256v1 ---

const SM2_D: &str = "3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8";
const SM2_PUB: &str = "04 09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020 \
                          CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13";
const SM2_K: &str = "59276E27 D506861A 16680F3A D9C02DCC EF3CC1FA 3CDBE4CE 6D54B80D EAC1BC21";
const SM2_R: &str = "F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3";
const SM2_S: &str = "B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA";

fn scalar(hex: &str) -> Scalar {
    Option::from(Scalar::from_repr(FieldBytes::clone_from_slice(&h(hex)))).unwrap()
}

#[test]
fn sm2_standard_example_verifies() {
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(CERT_SM2_ID, &h(SM2_PUB)).unwrap();
    let sig = sm2::dsa::Signature::from_scalars(
        <[u8; 32]>::try_from(h(SM2_R)).unwrap(),
        <[u8; 32]>::try_from(h(SM2_S)).unwrap(),
    )
    .unwrap();
    assert!(key.verify(b"message digest", &sig).is_ok());
    // The identifier is part of what is signed.
    let other = sm2::dsa::VerifyingKey::from_sec1_bytes(TLS13_SM2_ID, &h(SM2_PUB)).unwrap();
    assert!(other.verify(b"message digest", &sig).is_err());
    assert!(key.verify(b"message digest!", &sig).is_err());
    // The DER form used on the wire and in certificates round-trips.
    let der = signature_to_der(&sig).unwrap();
    assert_eq!(signature_from_der(&der).unwrap(), sig);
}

/// Recomputes the example's (r, s) from d and k with the formulas of
/// GB/T 32918.2 (Z from ENTL, ID, curve and key), independently of the
/// crate's signer: checks the crate's curve constants and Z layout.
#[test]
fn sm2_standard_example_recomputed() {
    let d = scalar(SM2_D);
    let k = scalar(SM2_K);
    let public = (ProjectivePoint::GENERATOR * d).to_affine();
    assert_eq!(
        public.to_encoded_point(false).as_bytes(),
        h(SM2_PUB).as_slice()
    );

    let mut z = Sm3::new();
    z.update([0x00, 0x80]); // ENTL: 16 bytes = 128 bits
    z.update(CERT_SM2_ID.as_bytes());
    z.update(h(
        "FFFFFFFE FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF 00000000 FFFFFFFF FFFFFFFC",
    ));
    z.update(h(
        "28E9FA9E 9D9F5E34 4D5A9E4B CF6509A7 F39789F5 15AB8F92 DDBCBD41 4D940E93",
    ));
    z.update(h(
        "32C4AE2C 1F198119 5F990446 6A39C994 8FE30BBF F2660BE1 715A4589 334C74C7",
    ));
    z.update(h(
        "BC3736A2 F4F6779C 59BDCEE3 6B692153 D0A9877C C62A4740 02DF32E5 2139F0A0",
    ));
    z.update(&h(SM2_PUB)[1..]);
    let z = z.finalize();
    let e = Sm3::new()
        .chain_update(z)
        .chain_update(b"message digest")
        .finalize();

    let e = <Scalar as Reduce<sm2::U256>>::reduce_bytes(&e);
    let x1 = (ProjectivePoint::GENERATOR * k).to_affine().x();
    let r = e + <Scalar as Reduce<sm2::U256>>::reduce_bytes(&x1);
    let s = Option::<Scalar>::from((Scalar::ONE + d).invert()).unwrap() * (k - r * d);
    assert_eq!(r.to_repr().to_vec(), h(SM2_R));
    assert_eq!(s.to_repr().to_vec(), h(SM2_S));
}

#[test]
fn sm2_sign_verify_with_tls13_id() {
    let secret = SecretKey::from_slice(&h(SM2_D)).unwrap();
    let signer = sm2::dsa::SigningKey::new(TLS13_SM2_ID, &secret).unwrap();
    let sig: sm2::dsa::Signature = signer.sign(b"transcript");
    let der = signature_to_der(&sig).unwrap();
    let parsed = signature_from_der(&der).unwrap();
    let tls = sm2::dsa::VerifyingKey::from_sec1_bytes(TLS13_SM2_ID, &h(SM2_PUB)).unwrap();
    assert!(tls.verify(b"transcript", &parsed).is_ok());
    let cert = sm2::dsa::VerifyingKey::from_sec1_bytes(CERT_SM2_ID, &h(SM2_PUB)).unwrap();
    assert!(cert.verify(b"transcript", &parsed).is_err());
}

#[test]
fn sm2_signature_der_rejects_garbage() {
    assert!(signature_from_der(&[]).is_none());
    assert!(signature_from_der(&[0x30, 0x00]).is_none());
    // r = 0 is not a valid SM2 signature component.
    assert!(signature_from_der(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]).is_none());
    // 33-byte integer without a sign pad.
    let mut long = vec![0x30, 0x26, 0x02, 0x21];
    long.extend([0x7f; 33]);
    long.extend([0x02, 0x01, 0x01]);
    assert!(signature_from_der(&long).is_none());
}

// --- RFC 8998 key schedule pieces: HMAC-SM3 and HKDF-SM3 ---

/// HMAC (RFC 2104) written out over SM3 with a 64-byte block.
fn hmac_sm3_by_hand(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sm3_hash(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sm3::new().chain_update(&ipad).chain_update(msg).finalize();
    Sm3::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn hmac_sm3_matches_rfc2104_construction() {
    for key_len in [0usize, 16, 32, 64, 65, 100] {
        let key: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
        let tag = HMAC_SM3.with_key(&key).sign(&[b"Hi ", b"There"]);
        assert_eq!(tag.as_ref(), hmac_sm3_by_hand(&key, b"Hi There").as_slice());
    }
}

/// TLS 1.3 HKDF-Expand-Label info for `label` and `context`.
fn label_info(len: u16, label: &str, context: &[u8]) -> Vec<u8> {
    let mut info = len.to_be_bytes().to_vec();
    let full = format!("tls13 {label}");
    info.push(full.len() as u8);
    info.extend(full.as_bytes());
    info.push(context.len() as u8);
    info.extend(context);
    info
}

/// The start of the RFC 8446 key schedule with SM3 (RFC 8998 section 3.4):
/// early secret and the derived secret, computed through the suite's HKDF and
/// again from the hand-written HMAC.
#[test]
fn hkdf_sm3_early_secret_and_derive_secret() {
    let hkdf = match super::TLS13_SM4_GCM_SM3 {
        rustls::SupportedCipherSuite::Tls13(s) => s.hkdf_provider,
        _ => unreachable!("a TLS 1.3 suite"),
    };
    // Early secret = HKDF-Extract(salt = 0, IKM = 0^32).
    let early_by_hand = hmac_sm3_by_hand(&[], &[0u8; 32]);
    let empty_hash = sm3_hash(b"");
    // Derive-Secret(early, "derived", "") = HKDF-Expand-Label(., "derived", SM3(""), 32).
    let info = label_info(32, "derived", &empty_hash);
    let mut t1_input = info.clone();
    t1_input.push(1);
    let derived_by_hand = hmac_sm3_by_hand(&early_by_hand, &t1_input);

    let expander = hkdf.extract_from_zero_ikm(None);
    let mut derived = [0u8; 32];
    expander
        .expand_slice(
            &[
                &info[..2],
                &info[2..3],
                &info[3..16],
                &info[16..17],
                &info[17..],
            ],
            &mut derived,
        )
        .unwrap();
    assert_eq!(derived.to_vec(), derived_by_hand);

    // And the `hkdf` crate agrees with both.
    let reference = hkdf::Hkdf::<Sm3>::new(Some(&[0u8; 32]), &[0u8; 32]);
    let mut okm = [0u8; 32];
    reference.expand(&info, &mut okm).unwrap();
    assert_eq!(okm.to_vec(), derived_by_hand);
}

#[test]
fn record_layer_round_trip_and_tamper() {
    for suite in [super::TLS13_SM4_GCM_SM3, super::TLS13_SM4_CCM_SM3] {
        let aead = match suite {
            rustls::SupportedCipherSuite::Tls13(s) => s.aead_alg,
            _ => unreachable!("a TLS 1.3 suite"),
        };
        // AeadKey only converts from 32 bytes; the suite uses the first 16.
        let key = [7u8; 32];
        let iv = [9u8; 12];
        let mut enc = aead.encrypter(key.into(), iv.into());
        let mut dec = aead.decrypter(key.into(), iv.into());
        let payload = b"hello guomi";
        let plain = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_3,
            payload: OutboundChunks::Single(payload),
        };
        let opaque = enc.encrypt(plain, 5).unwrap();
        let mut wire = opaque.encode();
        assert_eq!(wire.len(), 5 + payload.len() + 1 + 16);
        let body = wire[5..].to_vec();

        let mut ok = body.clone();
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut ok,
        );
        let plain = dec.decrypt(msg, 5).unwrap();
        assert_eq!(plain.payload, payload);
        assert_eq!(plain.typ, ContentType::ApplicationData);

        // Wrong sequence number (nonce) or a flipped byte: refused.
        let mut again = body.clone();
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut again,
        );
        assert!(dec.decrypt(msg, 6).is_err());
        wire[7] ^= 1;
        let mut flipped = wire[5..].to_vec();
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut flipped,
        );
        assert!(dec.decrypt(msg, 5).is_err());
        // Shorter than a tag: an error, not a panic.
        let mut short = vec![0u8; 3];
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut short,
        );
        assert!(dec.decrypt(msg, 5).is_err());
    }
}

// --- curveSM2 ECDHE ---

#[test]
fn curve_sm2_ecdh_agrees_and_refuses_bad_points() {
    let a = NonZeroScalar::random(&mut rand_core::OsRng);
    let b = NonZeroScalar::random(&mut rand_core::OsRng);
    let pa = (ProjectivePoint::GENERATOR * *a)
        .to_affine()
        .to_encoded_point(false);
    let pb = (ProjectivePoint::GENERATOR * *b)
        .to_affine()
        .to_encoded_point(false);
    let s1 = ecdh(&a, pb.as_bytes()).unwrap();
    let s2 = ecdh(&b, pa.as_bytes()).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.len(), 32);

    // Compressed form, wrong length, off-curve point, all-zero: refused.
    let compressed = (ProjectivePoint::GENERATOR * *b)
        .to_affine()
        .to_encoded_point(true);
    assert!(ecdh(&a, compressed.as_bytes()).is_err());
    assert!(ecdh(&a, &pb.as_bytes()[..64]).is_err());
    let mut off = pb.as_bytes().to_vec();
    off[64] ^= 1;
    assert!(ecdh(&a, &off).is_err());
    let mut zero = vec![0u8; 65];
    zero[0] = 4;
    assert!(ecdh(&a, &zero).is_err());
}

#[test]
fn scalar_field_sanity() {
    // n - 1 + 1 wraps to zero: the crate's group order is the SM2 one.
    let n_minus_1 =
        scalar("FFFFFFFE FFFFFFFF FFFFFFFF FFFFFFFF 7203DF6B 21C6052B 53BBF409 39D54122");
    assert!(bool::from((n_minus_1 + Scalar::ONE).is_zero()));
}
