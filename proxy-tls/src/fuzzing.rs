//! Entry points for the fuzz targets in `proxy-tls/fuzz`: each feeds arbitrary bytes
//! to one Guomi decoder or verifier of untrusted input. Not a stable API.
//!
//! Inputs that carry several values (a chain, a message and a signature) are split
//! into length-prefixed fields: a big-endian `u16` length, then that many bytes (the
//! last field takes what is left when the length runs past the end).

use std::sync::Arc;

use rustls::{
    client::danger::ServerCertVerifier,
    crypto::cipher::{AeadKey, InboundOpaqueMessage, Iv, OutboundChunks, OutboundPlainMessage},
    internal::msgs::codec::Codec,
    pki_types::{
        pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
        ServerName, UnixTime,
    },
    server::{danger::ClientCertVerifier, Acceptor},
    ContentType, DigitallySignedStruct, ProtocolVersion, SupportedCipherSuite,
};

use crate::guomi::{self, Sm2ClientVerifier, Sm2RootStore, Sm2ServerVerifier};

/// Splits `data` into length-prefixed fields (see the module docs).
pub fn fields(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// Joins fields into the length-prefixed form [`fields`] reads (for seeds).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&p[..usize::from(len)]);
    }
    out
}

/// A fixed time inside the validity of the seed certificates (2030-01-01), so that
/// the fuzzer reaches the signature checks past the validity check.
const NOW_SECS: u64 = 1_893_456_000;

/// Certificate chain verification: field 0 is a root (added to a store when it
/// parses), field 1 the end-entity certificate, the rest intermediates. The chain is
/// verified as a server (`a.test`, and an IP name) and as a client.
pub fn guomi_chain(data: &[u8]) {
    let f = fields(data);
    let Some((root, rest)) = f.split_first() else {
        return;
    };
    let mut store = Sm2RootStore::new();
    let _ = store.add(&CertificateDer::from(*root));
    let Some((ee, inters)) = rest.split_first() else {
        return;
    };
    let ee = CertificateDer::from(*ee);
    let inters: Vec<CertificateDer<'_>> = inters.iter().map(|c| CertificateDer::from(*c)).collect();
    let roots = Arc::new(store);
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW_SECS));
    let server = Sm2ServerVerifier::new(roots.clone());
    for name in ["a.test", "10.0.0.1"] {
        if let Ok(name) = ServerName::try_from(name) {
            let _ = server.verify_server_cert(&ee, &inters, &name, &[], now);
        }
    }
    let _ = Sm2ClientVerifier::new(roots).verify_client_cert(&ee, &inters, now);
}

/// SM2 private key loading: the bytes as PKCS#8 DER, as SEC1 DER, and as PEM.
pub fn guomi_key(data: &[u8]) {
    let _ = guomi::load_sm2_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(data)));
    let _ = guomi::load_sm2_key(&PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(data)));
    if let Ok(der) = PrivateKeyDer::from_pem_slice(data) {
        let _ = guomi::load_sm2_key(&der);
    }
}

/// PEM certificate chain and key loading as a server builder does it, with the key
/// matched against the end-entity certificate: field 0 is the chain PEM, field 1
/// the key PEM.
pub fn guomi_pem(data: &[u8]) {
    let f = fields(data);
    if let [cert, key, ..] = f.as_slice() {
        let _ = guomi::GuomiServerBuilder::from_pem(cert, key);
    }
}

/// CertificateVerify verification (`sm2sig_sm3`): field 0 is the signer's
/// certificate, field 1 the signed message, field 2 a `DigitallySignedStruct` as on
/// the wire (scheme, `u16` length, signature).
pub fn guomi_signature(data: &[u8]) {
    let f = fields(data);
    let [cert, message, dss, ..] = f.as_slice() else {
        return;
    };
    let Ok(dss) = DigitallySignedStruct::read_bytes(dss) else {
        return;
    };
    let cert = CertificateDer::from(*cert);
    let server = Sm2ServerVerifier::new(Arc::new(Sm2RootStore::new()));
    let _ = server.verify_tls13_signature(message, &cert, &dss);
    let _ = server.verify_tls12_signature(message, &cert, &dss);
}

/// A curveSM2 key share from a peer: completes a fresh exchange with `data` as the
/// peer's public key.
pub fn curve_sm2_share(data: &[u8]) {
    if let Ok(kx) = guomi::CURVE_SM2.start() {
        let _ = kx.complete(data);
    }
}

/// An SM4-GCM and an SM4-CCM TLS 1.3 record layer with a fixed key: with the first
/// byte even, the rest is decrypted as a received record (the tag check, then the
/// inner content type and padding); odd, it is encrypted as application data and
/// decrypted back, which must give it back unchanged.
pub fn sm4_record(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    for suite in [guomi::TLS13_SM4_GCM_SM3, guomi::TLS13_SM4_CCM_SM3] {
        let SupportedCipherSuite::Tls13(s) = suite else {
            continue;
        };
        let key = || AeadKey::from([0x5a; 32]);
        let iv = || Iv::from([0xa5; 12]);
        let mut dec = s.aead_alg.decrypter(key(), iv());
        let version = ProtocolVersion::TLSv1_2;
        if mode % 2 == 0 {
            let mut payload = body.to_vec();
            let msg =
                InboundOpaqueMessage::new(ContentType::ApplicationData, version, &mut payload);
            let _ = dec.decrypt(msg, u64::from(mode));
            continue;
        }
        let mut enc = s.aead_alg.encrypter(key(), iv());
        let plain = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version,
            payload: OutboundChunks::Single(body),
        };
        let Ok(sealed) = enc.encrypt(plain, 7) else {
            continue;
        };
        let mut wire = sealed.encode();
        // Past the 5-byte record header.
        let Some(payload) = wire.get_mut(5..) else {
            continue;
        };
        let msg = InboundOpaqueMessage::new(ContentType::ApplicationData, version, payload);
        match dec.decrypt(msg, 7) {
            Ok(opened) => {
                assert_eq!(opened.typ, ContentType::ApplicationData);
                assert_eq!(opened.payload, body, "SM4 record round trip");
            }
            Err(e) => panic!("a record we sealed does not open: {e}"),
        }
    }
}

/// A ClientHello (TLS records) read by rustls' `Acceptor`, then the Guomi suite
/// check a listener uses to pick its config.
pub fn client_hello_guomi(data: &[u8]) {
    let mut acceptor = Acceptor::default();
    let mut rd = data;
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Ok(Some(accepted)) = acceptor.accept() {
            let _ = guomi::offers_guomi(&accepted.client_hello());
            return;
        }
    }
}

/// The continued TLS 1.3 record layer (hot upgrade): the bytes as encoded session
/// secrets, then as records received under fixed AES-128-GCM keys (header checks,
/// size limits, tag, inner content type and padding, alerts, post-handshake
/// messages), then as plaintext sealed into a record.
pub fn continued_record(data: &[u8]) {
    crate::continued::fuzz_records(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let parts: [&[u8]; 3] = [b"abc", b"", b"defg"];
        assert_eq!(fields(&join(&parts)), parts.to_vec());
        // A length past the end takes what is left; a lone byte is dropped.
        assert_eq!(fields(&[0, 9, 1, 2]), vec![&[1u8, 2][..]]);
        assert!(fields(&[7]).is_empty());
    }

    #[test]
    fn entry_points_take_garbage() {
        for data in [&b""[..], b"\x00", b"\x00\x05hello\x00\x02hi", &[0xff; 300]] {
            guomi_chain(data);
            guomi_key(data);
            guomi_pem(data);
            guomi_signature(data);
            curve_sm2_share(data);
            client_hello_guomi(data);
            sm4_record(data);
        }
        // Round trips of records up to 16 KiB, odd first byte.
        for len in [1usize, 2, 17, 300, 16 * 1024] {
            let mut data = vec![0u8; len];
            data[0] = 1;
            sm4_record(&data);
        }
    }

    /// Builds the seeds of the fuzz targets from a real SM2 PKI (valid 2020 to 2049, so
    /// `NOW_SECS` is inside) and checks that each reaches the deepest path: the chain
    /// verifies, the signature verifies, the key and PEM load. With
    /// `PROXY_TLS_WRITE_FUZZ_SEEDS=1` it also writes them to `fuzz/seeds/<target>/`.
    #[test]
    fn seeds_reach_the_verifiers() {
        use crate::guomi::test_pki::{issue, sign_der, Spec, CLIENT_AUTH, SERVER_AUTH};
        use std::time::{Duration, UNIX_EPOCH};
        let wide = |mut s: Spec| {
            s.not_before = UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020
            s.not_after = UNIX_EPOCH + Duration::from_secs(2_524_521_600); // 2049-12-31
            s
        };
        let root = issue(&wide(Spec::ca("fuzz root")), None);
        let inter = issue(&wide(Spec::ca("fuzz intermediate")), Some(&root));
        let leaf = issue(
            &wide(Spec::leaf("a.test", &["a.test"], SERVER_AUTH)),
            Some(&inter),
        );
        let client = issue(&wide(Spec::leaf("client", &[], CLIENT_AUTH)), Some(&root));
        let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW_SECS));

        let chain = join(&[root.der.as_ref(), leaf.der.as_ref(), inter.der.as_ref()]);
        let mut store = Sm2RootStore::new();
        store.add(&root.der).unwrap_or_else(|e| panic!("{e}"));
        let verifier = Sm2ServerVerifier::new(Arc::new(store));
        let name = ServerName::try_from("a.test").unwrap_or_else(|e| panic!("{e}"));
        let f = fields(&chain);
        let inters = [CertificateDer::from(f[2])];
        assert!(verifier
            .verify_server_cert(&CertificateDer::from(f[1]), &inters, &name, &[], now)
            .is_ok());
        let client_chain = join(&[root.der.as_ref(), client.der.as_ref()]);

        let message = b"TLS 1.3, server CertificateVerify\x00transcript hash";
        let sig = sign_der(&leaf.key, crate::guomi::TLS13_SM2_ID, message);
        let mut dss = Vec::new();
        dss.extend_from_slice(&0x0708u16.to_be_bytes());
        dss.extend_from_slice(&u16::try_from(sig.len()).unwrap_or(0).to_be_bytes());
        dss.extend_from_slice(&sig);
        let signature = join(&[leaf.der.as_ref(), message, &dss]);
        let parsed = DigitallySignedStruct::read_bytes(&dss).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(verifier
            .verify_tls13_signature(message, &leaf.der, &parsed)
            .is_ok());

        let pkcs8 = leaf.key_pkcs8();
        assert!(
            guomi::load_sm2_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                pkcs8.as_slice()
            )))
            .is_ok()
        );
        let key_pem = leaf.key_pem();
        let chain_pem = format!("{}{}", leaf.cert_pem(), inter.cert_pem());
        let pem = join(&[chain_pem.as_bytes(), key_pem.as_bytes()]);
        assert!(
            guomi::GuomiServerBuilder::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).is_ok()
        );

        let share = guomi::CURVE_SM2.start().unwrap_or_else(|e| panic!("{e}"));
        let share = share.pub_key().to_vec();

        let client_config = guomi::GuomiClientBuilder::new(Arc::new(Sm2RootStore::new()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut hello_conn = rustls::ClientConnection::new(Arc::new(client_config), name)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut hello = Vec::new();
        hello_conn
            .write_tls(&mut hello)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut acceptor = Acceptor::default();
        acceptor
            .read_tls(&mut hello.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        let accepted = acceptor
            .accept()
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no ClientHello"));
        assert!(guomi::offers_guomi(&accepted.client_hello()));

        // A real SM4-GCM record (sequence 0, the even first byte) for the decrypt path.
        let sealed = {
            let SupportedCipherSuite::Tls13(gcm) = guomi::TLS13_SM4_GCM_SM3 else {
                panic!("not a TLS 1.3 suite")
            };
            let mut enc = gcm
                .aead_alg
                .encrypter(AeadKey::from([0x5a; 32]), Iv::from([0xa5; 12]));
            let plain = OutboundPlainMessage {
                typ: ContentType::ApplicationData,
                version: ProtocolVersion::TLSv1_2,
                payload: OutboundChunks::Single(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"),
            };
            let wire = enc
                .encrypt(plain, 0)
                .unwrap_or_else(|e| panic!("{e}"))
                .encode();
            let mut seed = vec![0u8];
            seed.extend_from_slice(&wire[5..]);
            seed
        };
        let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
            ("sm4_record", "sealed_gcm_seq0", sealed),
            (
                "sm4_record",
                "round_trip",
                b"\x01GET / HTTP/1.1\r\n\r\n".to_vec(),
            ),
            ("client_hello_guomi", "guomi_client", hello),
            ("guomi_chain", "server_chain", chain),
            ("guomi_chain", "client_chain", client_chain),
            ("guomi_key", "pkcs8_der", pkcs8),
            ("guomi_key", "pkcs8_pem", key_pem.clone().into_bytes()),
            ("guomi_pem", "chain_and_key", pem),
            ("guomi_signature", "certificate_verify", signature),
            ("curve_sm2_share", "uncompressed_point", share),
        ];
        for (target, _, data) in &seeds {
            match *target {
                "guomi_chain" => guomi_chain(data),
                "guomi_key" => guomi_key(data),
                "guomi_pem" => guomi_pem(data),
                "guomi_signature" => guomi_signature(data),
                "client_hello_guomi" => client_hello_guomi(data),
                "sm4_record" => sm4_record(data),
                _ => curve_sm2_share(data),
            }
        }
        if std::env::var_os("PROXY_TLS_WRITE_FUZZ_SEEDS").is_some() {
            let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
            for (target, name, data) in &seeds {
                let dir = base.join(target);
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn the_key_share_target_completes_a_real_exchange() {
        let peer = guomi::CURVE_SM2.start().unwrap_or_else(|e| panic!("{e}"));
        let ours = guomi::CURVE_SM2.start().unwrap_or_else(|e| panic!("{e}"));
        assert!(ours.complete(peer.pub_key()).is_ok());
        curve_sm2_share(peer.pub_key());
    }
}
