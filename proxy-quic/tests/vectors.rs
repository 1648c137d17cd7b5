//! The published test vectors of draft-ietf-quic-load-balancers-21: Appendix B
//! ("Load Balancer Test Vectors") and the encryption example of section 5.4.2.4.
//! In all of them the server encodes the CID length in the first octet.

use proxy_quic::{CidFormat, CidKey, ConfigId, Decoded, Decoder, Nonce, ServerId};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("test hex"))
        .collect()
}

/// Encodes `sid` + `nonce` under config `cr` and checks the draft's `cid`, then
/// decodes it back (both the load balancer's server-ID-only path and the full one).
fn check(cr: u8, key: Option<&str>, sid: &str, nonce: &str, cid: &str) {
    let key = key.map(|k| CidKey::from_hex(k).expect("test key"));
    let (sid, nonce) = (hex(sid), hex(nonce));
    let format = CidFormat::new(
        ConfigId::new(cr).expect("config id"),
        sid.len(),
        nonce.len(),
        key.as_ref(),
        true,
    )
    .expect("format");
    let server_id = ServerId::new(&sid).expect("server id");
    let nonce = Nonce::new(&nonce).expect("nonce");
    let encoded = format.encode(&server_id, &nonce, 0).expect("encode");
    assert_eq!(encoded.to_string(), cid, "encoding of {server_id}");

    let bytes = hex(cid);
    assert_eq!(format.server_id(&bytes), Some(server_id));
    assert_eq!(format.decode(&bytes), Some((server_id, nonce)));
    let mut decoder = Decoder::new();
    decoder.insert(format);
    assert_eq!(
        decoder.decode(&bytes),
        Decoded::Routable {
            config_id: ConfigId::new(cr).expect("config id"),
            server_id
        }
    );
}

const KEY: &str = "8f95f09245765f80256934e50c66207f";

/// B.1, first line. (The second line, `1 350d28b420 3487d970b
/// 20a350d28b4203487d970b`, is malformed in the draft: its nonce has nine hex digits
/// and its first octet cannot encode config 1 with a self-encoded length, so it is
/// not checked.)
#[test]
fn unencrypted_vector() {
    check(0, None, "c4605e", "4504cc4f", "07c4605e4504cc4f");
}

/// B.2, first line: 7 octets, four-pass with an odd length (middle nibble split).
#[test]
fn encrypted_four_pass_odd_length() {
    check(0, Some(KEY), "ed793a", "ee080dbf", "0720b1d07b359d3c");
}

/// B.2, second line: server ID longer than the nonce, so the load balancer needs the
/// fourth decryption pass.
#[test]
fn encrypted_four_pass_long_server_id() {
    check(
        1,
        Some(KEY),
        "ed793a51d49b8f5fab65",
        "ee080dbf48",
        "2fcc381bc74cb4fbad2823a3d1f8fed2",
    );
}

/// B.2, third line: server ID + nonce = 16 octets, single-pass AES-128-ECB.
#[test]
fn encrypted_single_pass() {
    check(
        2,
        Some(KEY),
        "ed793a51d49b8f5f",
        "ee080dbf48c0d1e5",
        "504dd2d05a7b0de9b2b9907afb5ecf8cc3",
    );
}

/// B.2, fourth line: 18 octets, four-pass with an even length. The draft lists it
/// under `cr_bits` 3 but its first octet, 0x12, carries config rotation bits 0 and
/// length 18; the ciphertext does not depend on the first octet, so it is checked as
/// config 0 (the octet as published) and, after the first octet, as config 3.
#[test]
fn encrypted_four_pass_even_length() {
    let (sid, nonce) = ("ed793a51d49b8f5fab", "ee080dbf48c0d1e55d");
    let cid = "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc";
    check(0, Some(KEY), sid, nonce, cid);
    check(3, Some(KEY), sid, nonce, &format!("72{}", &cid[2..]));
}

/// Section 5.4.2.4, "Encryption Example" (its intermediate values are checked in
/// the crate's unit tests).
#[test]
fn encryption_example() {
    check(
        0,
        Some("fdf726a9893ec05c0632d3956680baf0"),
        "31441a",
        "9c69c275",
        "0767947d29be054a",
    );
}
