//! Signing keys and tokens for the tests of JWT authentication: an Ed25519 or P-256
//! key, its public JWK, tokens it signs, and the bad tokens (unsigned, wrongly
//! signed) a verifier must refuse.
//!
//! ```
//! use proxy_test_support::jwt::{now, TestKey};
//! let key = TestKey::ed25519();
//! let jwks = serde_json::json!({ "keys": [key.jwk("k1")] });
//! let token = key.sign(Some("k1"), &serde_json::json!({ "sub": "ann", "exp": now() + 60 }));
//! assert_eq!(token.split('.').count(), 3);
//! # let _ = jwks;
//! ```

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK (without `kid`).
#[derive(Clone)]
pub struct TestKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey").field("alg", &self.alg).finish()
    }
}

impl TestKey {
    /// A fresh Ed25519 key (`EdDSA`).
    ///
    /// # Panics
    ///
    /// Key generation failed.
    pub fn ed25519() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
        Self {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&key.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64(key.public_key_raw())}),
        }
    }

    /// A fresh P-256 key (`ES256`).
    ///
    /// # Panics
    ///
    /// Key generation failed.
    pub fn p256() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256 key");
        let point = key.public_key_raw();
        Self {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
        }
    }

    /// The public JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// A token for `claims`, its header naming `kid`.
    ///
    /// # Panics
    ///
    /// Signing failed.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign token")
    }
}

/// An unsigned token (`alg: none`, empty signature) for `claims`, naming `kid`.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Seconds since the Unix epoch, for `exp`, `nbf` and `iat`.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Base64url without padding, as JWTs and JWKs write bytes.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
