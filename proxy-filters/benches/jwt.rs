//! ns per request through `jwt_auth` (inline key set, so no fetch in the loop): the
//! token read from `authorization`, its header checked, the signature verified
//! (RS256 with a 2048-bit key, ES256, EdDSA), claims checked and two of them written
//! as headers, the consumer put in the extensions.

// criterion_group! makes undocumented items.
#![allow(missing_docs, clippy::unwrap_used)]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{jwk::JwkSet, Algorithm, EncodingKey, Header};
use proxy_filters::auth::{ClaimHeader, JwksSource, JwtAlgorithm, JwtAuthConfig, JwtAuthLayer};
use serde_json::{json, Value};

mod common;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and its public JWK (kid `k`).
fn key(alg: Algorithm) -> (EncodingKey, Value) {
    match alg {
        Algorithm::RS256 => {
            use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
            (
                EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
                json!({"kty": "RSA", "kid": "k", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())}),
            )
        }
        Algorithm::ES256 => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let p = key.public_key_raw();
            (
                EncodingKey::from_ec_der(&key.serialize_der()),
                json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(&p[1..33]), "y": b64(&p[33..65])}),
            )
        }
        _ => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            (
                EncodingKey::from_ed_der(&key.serialize_der()),
                json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": b64(key.public_key_raw())}),
            )
        }
    }
}

fn jwt(c: &mut Criterion) {
    for (alg, ours, name) in [
        (Algorithm::RS256, JwtAlgorithm::RS256, "rs256"),
        (Algorithm::ES256, JwtAlgorithm::ES256, "es256"),
        (Algorithm::EdDSA, JwtAlgorithm::EdDSA, "eddsa"),
    ] {
        let (signing, jwk) = key(alg);
        let set: JwkSet = serde_json::from_value(json!({ "keys": [jwk] })).unwrap();
        let mut cfg = JwtAuthConfig::new(vec![ours], JwksSource::Inline(set));
        cfg.issuers = vec!["https://idp.bench/".into()];
        cfg.audiences = vec!["api".into()];
        cfg.claims_to_headers = vec![
            ClaimHeader {
                claim: "sub".into(),
                header: "x-user".into(),
            },
            ClaimHeader {
                claim: "tenant".into(),
                header: "x-tenant".into(),
            },
        ];
        let layer = JwtAuthLayer::try_from(&cfg).unwrap();
        let mut header = Header::new(alg);
        header.kid = Some("k".into());
        let claims = json!({"sub": "alice", "iss": "https://idp.bench/", "aud": "api",
            "exp": jsonwebtoken::get_current_timestamp() + 3600, "tenant": "acme"});
        let bearer = format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &signing).unwrap()
        );
        common::bench(c, &format!("jwt_{name}"), "verify", layer, || {
            let mut req = common::request();
            req.headers_mut()
                .insert("authorization", bearer.parse().unwrap());
            req
        });
    }
}

criterion_group!(benches, jwt);
criterion_main!(benches);
