//! Token verification, pure and synchronous: the header read and checked (shape,
//! `alg` among the configured ones, no `crit`), then signature and claims by
//! `jsonwebtoken` against a [`KeySet`].

use std::{collections::HashSet, sync::Arc};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{errors::ErrorKind, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    config::{JwtAlgorithm, JwtAuthConfig},
    jwks::{Key, KeySet},
    Consumer, Failure,
};
use crate::ConfigError;

/// The longest token looked at; longer is `malformed`.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Keys tried for a token without `kid`.
const MAX_KIDLESS_TRIES: usize = 4;

/// Checks tokens against a key set by the rules of a [`JwtAuthConfig`].
///
/// ```
/// use proxy_filters::auth::{Failure, JwksSource, JwtAlgorithm, JwtAuthConfig, KeySet, Verifier};
/// let cfg = JwtAuthConfig::new(
///     vec![JwtAlgorithm::EdDSA],
///     JwksSource::Inline(jsonwebtoken::jwk::JwkSet { keys: vec![] }),
/// );
/// let verifier = Verifier::new(&cfg)?;
/// let keys = KeySet::default();
/// // {"alg":"none"}.{"sub":"x"}.
/// let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
/// assert_eq!(verifier.verify(unsigned, &keys).unwrap_err(), Failure::AlgNotAllowed);
/// assert_eq!(verifier.verify("not.a.token", &keys).unwrap_err(), Failure::Malformed);
/// # Ok::<_, proxy_filters::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    /// One validation per accepted algorithm.
    validations: Vec<(JwtAlgorithm, Validation)>,
    consumer_claim: Arc<str>,
}

/// A verified token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// Who it names, with its claims.
    pub consumer: Consumer,
}

/// What the header of a token says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Peek {
    pub(crate) alg: JwtAlgorithm,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// The verifier of `cfg`'s algorithms, issuers, audiences, clock skew and
    /// consumer claim (its `jwks` is not looked at).
    ///
    /// # Errors
    /// No algorithm, a clock skew over an hour, an empty consumer claim.
    pub fn new(cfg: &JwtAuthConfig) -> Result<Self, ConfigError> {
        install_provider();
        if cfg.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "algorithms",
                "needs at least one of RS256, ES256, EdDSA",
            ));
        }
        if cfg.clock_skew.as_secs() > 3600 {
            return Err(ConfigError::invalid("clock_skew", "at most 1h"));
        }
        if cfg.consumer_claim.is_empty() {
            return Err(ConfigError::invalid("consumer_claim", "must not be empty"));
        }
        for (i, a) in cfg.audiences.iter().enumerate() {
            if a.is_empty() {
                return Err(ConfigError::invalid(format!("audiences[{i}]"), "is empty"));
            }
        }
        for (i, a) in cfg.issuers.iter().enumerate() {
            if a.is_empty() {
                return Err(ConfigError::invalid(format!("issuers[{i}]"), "is empty"));
            }
        }
        let mut validations = Vec::new();
        for alg in cfg.algorithms.iter().copied() {
            if validations.iter().any(|(a, _)| *a == alg) {
                continue;
            }
            let mut v = Validation::new(alg.jwt());
            v.leeway = cfg.clock_skew.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required = HashSet::new();
            if cfg.require_exp {
                required.insert("exp".to_owned());
            }
            if cfg.issuers.is_empty() {
                v.iss = None;
            } else {
                v.set_issuer(&cfg.issuers);
                required.insert("iss".to_owned());
            }
            if cfg.audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&cfg.audiences);
                required.insert("aud".to_owned());
            }
            v.required_spec_claims = required;
            validations.push((alg, v));
        }
        Ok(Self {
            validations,
            consumer_claim: cfg.consumer_claim.as_str().into(),
        })
    }

    /// Reads the header of `token`: its shape, its `alg` (one of the configured ones)
    /// and `kid`.
    pub(crate) fn peek(&self, token: &str) -> Result<Peek, Failure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Malformed);
        };
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !base64url(payload) || !base64url(signature) {
            return Err(Failure::Malformed);
        }
        let json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| Failure::Malformed)?;
        let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| Failure::Malformed)?;
        let alg = JwtAlgorithm::from_name(&raw.alg)
            .filter(|a| self.validations.iter().any(|(v, _)| v == a))
            .ok_or(Failure::AlgNotAllowed)?;
        if raw.crit.is_some() {
            // No extension is understood, so none may be critical (RFC 7515 4.1.11).
            return Err(Failure::Malformed);
        }
        Ok(Peek { alg, kid: raw.kid })
    }

    /// Verifies `token` with `keys`: its consumer, or why it is refused.
    ///
    /// # Errors
    /// The [`Failure`] that names the first check the token fails.
    pub fn verify(&self, token: &str, keys: &KeySet) -> Result<Verified, Failure> {
        let peek = self.peek(token)?;
        self.verify_peeked(token, &peek, keys)
    }

    pub(crate) fn verify_peeked(
        &self,
        token: &str,
        peek: &Peek,
        keys: &KeySet,
    ) -> Result<Verified, Failure> {
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == peek.alg)
            .map(|(_, v)| v)
            .ok_or(Failure::AlgNotAllowed)?;
        let claims = match &peek.kid {
            Some(kid) => {
                let key = keys.get(kid).ok_or(Failure::UnknownKey)?;
                if key.alg != peek.alg {
                    return Err(Failure::AlgNotAllowed);
                }
                decode(token, key, validation)?
            }
            None => {
                let mut last = Failure::UnknownKey;
                let mut found = None;
                for key in keys.for_alg(peek.alg).take(MAX_KIDLESS_TRIES) {
                    match decode(token, key, validation) {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(Failure::BadSignature) => last = Failure::BadSignature,
                        Err(other) => return Err(other),
                    }
                }
                found.ok_or(last)?
            }
        };
        let id: Arc<str> = match claims.get(&*self.consumer_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.as_str().into(),
            Some(Value::Number(n)) => n.to_string().into(),
            _ => return Err(Failure::Malformed),
        };
        Ok(Verified {
            consumer: Consumer::with_claims(id, claims),
        })
    }
}

fn decode(token: &str, key: &Key, validation: &Validation) -> Result<Map<String, Value>, Failure> {
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
        .map(|t| t.claims)
        .map_err(|e| classify(e.kind()))
}

fn classify(kind: &ErrorKind) -> Failure {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Failure::BadSignature,
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidIssuer => Failure::BadIssuer,
        ErrorKind::InvalidAudience => Failure::BadAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Failure::BadIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Failure::BadAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Failure::AlgNotAllowed,
        _ => Failure::Malformed,
    }
}

/// Whether `key` loads in the verifier of `alg` (a point on the curve, an RSA key
/// the backend accepts).
pub(crate) fn check_key(key: &DecodingKey, alg: JwtAlgorithm) -> Result<(), String> {
    install_provider();
    // A key that loads verifies the dummy signature as false; one that does not is
    // an error.
    jsonwebtoken::crypto::verify("AA", b"probe", key, alg.jwt())
        .map(|_| ())
        .map_err(|e| format!("the key does not load: {e}"))
}

/// Selects the RustCrypto backend of `jsonwebtoken` for the process (a no-op once
/// one is installed), so that no other crate's features can leave it unselected.
pub(crate) fn install_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::JwksSource;

    fn verifier(algs: Vec<JwtAlgorithm>) -> Verifier {
        Verifier::new(&JwtAuthConfig::new(
            algs,
            JwksSource::Inline(jsonwebtoken::jwk::JwkSet { keys: vec![] }),
        ))
        .unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_checks() {
        let v = verifier(vec![JwtAlgorithm::ES256]);
        let tok = |h: &str| format!("{}.{}.AA", b64(h), b64("{}"));
        assert_eq!(
            v.peek(&tok(r#"{"alg":"none"}"#)),
            Err(Failure::AlgNotAllowed)
        );
        assert_eq!(
            v.peek(&tok(r#"{"alg":"HS256"}"#)),
            Err(Failure::AlgNotAllowed)
        );
        assert_eq!(
            v.peek(&tok(r#"{"alg":"RS256"}"#)),
            Err(Failure::AlgNotAllowed)
        );
        assert_eq!(
            v.peek(&tok(r#"{"alg":"ES256","crit":["b64"]}"#)),
            Err(Failure::Malformed)
        );
        assert_eq!(v.peek(&tok(r#"{"kid":"x"}"#)), Err(Failure::Malformed));
        assert_eq!(v.peek("a.b"), Err(Failure::Malformed));
        assert_eq!(v.peek("a.b.c.d"), Err(Failure::Malformed));
        assert_eq!(
            v.peek(&tok(r#"{"alg":"ES256","kid":"k"}"#)),
            Ok(Peek {
                alg: JwtAlgorithm::ES256,
                kid: Some("k".into())
            })
        );
        assert_eq!(
            v.verify(&tok(r#"{"alg":"ES256","kid":"k"}"#), &KeySet::default())
                .unwrap_err(),
            Failure::UnknownKey
        );
    }

    #[test]
    fn config_limits_name_the_field() {
        let mut cfg = JwtAuthConfig::new(
            vec![],
            JwksSource::Inline(jsonwebtoken::jwk::JwkSet { keys: vec![] }),
        );
        assert_eq!(Verifier::new(&cfg).unwrap_err().field(), "algorithms");
        cfg.algorithms = vec![JwtAlgorithm::RS256];
        cfg.clock_skew = std::time::Duration::from_secs(7200);
        assert_eq!(Verifier::new(&cfg).unwrap_err().field(), "clock_skew");
        cfg.clock_skew = std::time::Duration::ZERO;
        cfg.audiences = vec!["a".into(), String::new()];
        assert_eq!(Verifier::new(&cfg).unwrap_err().field(), "audiences[1]");
    }
}
