//! Config sections: a server's QUIC-LB config and a load balancer's list of
//! connection ID formats. Field names follow the draft's YANG models
//! (`ietf-quic-lb-server`, `ietf-quic-lb-middlebox`) in snake_case.

use proxy_core::ConfigError;
use serde::{Deserialize, Serialize};

use crate::types::{CidKey, ConfigId, ServerId};
use crate::{CidError, CidFormat};

/// A server's QUIC-LB config: which config rotation codepoint it issues connection
/// IDs under, its server ID, the nonce length, the key (absent: plaintext) and the
/// length self-description option.
///
/// ```yaml
/// config_id: 0
/// server_id: c4605e           # hex, 1-15 octets
/// nonce_length: 4             # octets, 4-18; server ID + nonce <= 19
/// cid_key: 8f95f09245765f80256934e50c66207f   # optional: 16 octets of hex
/// first_octet_encodes_cid_length: true        # optional, default false
/// ```
///
/// Build a [`QuicLbServer`](crate::QuicLbServer) from it with `try_from`; errors
/// name the field.
///
/// # Example
/// ```
/// use proxy_quic::{QuicLbConfig, QuicLbServer};
/// let config: QuicLbConfig = serde_json::from_str(
///     r#"{"config_id": 1, "server_id": "c4605e", "nonce_length": 4}"#).unwrap();
/// let server = QuicLbServer::try_from(&config).unwrap();
/// assert_eq!(server.format().cid_len(), 8);
///
/// let config = QuicLbConfig { nonce_length: 17, ..config };
/// let err = QuicLbServer::try_from(&config).unwrap_err();
/// assert_eq!(err.path, "nonce_length");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicLbConfig {
    /// The config rotation bits, 0-6.
    pub config_id: ConfigId,
    /// This server's ID, hex; its length is the configuration's server ID length.
    pub server_id: ServerId,
    /// The nonce length in octets, 4-18.
    pub nonce_length: u8,
    /// The AES-128 key, 32 hex digits; absent means plaintext connection IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid_key: Option<CidKey>,
    /// Whether the first octet's low five bits carry the length of the rest of the
    /// connection ID (else they are random).
    #[serde(default)]
    pub first_octet_encodes_cid_length: bool,
}

/// One connection ID format as a load balancer knows it: everything but the server
/// ID, whose length it gives instead.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, CidFormatConfig};
/// let config: CidFormatConfig = serde_json::from_str(
///     r#"{"config_id": 0, "server_id_length": 3, "nonce_length": 4,
///         "cid_key": "8f95f09245765f80256934e50c66207f"}"#).unwrap();
/// let format = CidFormat::try_from(&config).unwrap();
/// assert!(format.is_encrypted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidFormatConfig {
    /// The config rotation bits, 0-6.
    pub config_id: ConfigId,
    /// The server ID length in octets, 1-15.
    pub server_id_length: u8,
    /// The nonce length in octets, 4-18.
    pub nonce_length: u8,
    /// The AES-128 key, 32 hex digits; absent means plaintext connection IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid_key: Option<CidKey>,
    /// Whether every server of the pool encodes the length in the first octet: the
    /// decoder then refuses connection IDs whose first octet says another length.
    #[serde(default)]
    pub first_octet_encodes_cid_length: bool,
}

/// A load balancer's decoder config: every connection ID format in use, one per
/// config ID (two or more during a rotation).
///
/// ```yaml
/// configs:
///   - {config_id: 0, server_id_length: 3, nonce_length: 4, cid_key: 8f95f09245765f80256934e50c66207f}
///   - {config_id: 1, server_id_length: 3, nonce_length: 5, cid_key: 0123456789abcdef0123456789abcdef}
/// ```
///
/// # Example
/// ```
/// use proxy_quic::{Decoder, DecoderConfig};
/// let config: DecoderConfig = serde_json::from_str(r#"{"configs": [
///     {"config_id": 0, "server_id_length": 3, "nonce_length": 4},
///     {"config_id": 0, "server_id_length": 2, "nonce_length": 4}]}"#).unwrap();
/// let err = Decoder::try_from(&config).unwrap_err();
/// assert_eq!(err.to_string(), "configs[1].config_id: config ID 0 is already used by configs[0]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// The formats, at most one per config ID.
    #[serde(default)]
    pub configs: Vec<CidFormatConfig>,
}

/// Places a format error on the field that caused it.
pub(crate) fn format_error(err: CidError, server_id_field: &str) -> ConfigError {
    let field = match err {
        CidError::ServerIdLength(_) => server_id_field,
        _ => "nonce_length",
    };
    ConfigError::new(field, err)
}

impl TryFrom<&CidFormatConfig> for CidFormat {
    type Error = ConfigError;

    fn try_from(c: &CidFormatConfig) -> Result<Self, ConfigError> {
        CidFormat::new(
            c.config_id,
            usize::from(c.server_id_length),
            usize::from(c.nonce_length),
            c.cid_key.as_ref(),
            c.first_octet_encodes_cid_length,
        )
        .map_err(|e| format_error(e, "server_id_length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(json: &str) -> Result<crate::QuicLbServer, String> {
        let c: QuicLbConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        crate::QuicLbServer::try_from(&c).map_err(|e| e.to_string())
    }

    #[test]
    fn server_config_errors_name_the_field() {
        let ok = r#"{"config_id": 0, "server_id": "c4605e", "nonce_length": 4}"#;
        assert!(server(ok).is_ok());
        let e = server(r#"{"config_id": 7, "server_id": "c4", "nonce_length": 4}"#).unwrap_err();
        assert!(e.contains("7 is reserved for unroutable"), "{e}");
        let e = server(r#"{"config_id": 0, "server_id": "", "nonce_length": 4}"#).unwrap_err();
        assert!(e.contains("a server ID is 1-15 octets"), "{e}");
        let e = server(r#"{"config_id": 0, "server_id": "c4x", "nonce_length": 4}"#).unwrap_err();
        assert!(e.contains("odd number of hex digits"), "{e}");
        let e = server(r#"{"config_id": 0, "server_id": "c4", "nonce_length": 3}"#).unwrap_err();
        assert_eq!(
            e,
            "nonce_length: a nonce of 3 octets: it must be 4-18 octets"
        );
        let e = server(
            r#"{"config_id": 0, "server_id": "000102030405060708090a0b0c0d0e", "nonce_length": 5}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with("nonce_length: server ID (15 octets) and nonce (5 octets) sum to 20"),
            "{e}"
        );
        let e =
            server(r#"{"config_id": 0, "server_id": "c4", "nonce_length": 4, "cid_key": "00"}"#)
                .unwrap_err();
        assert!(e.contains("an AES-128 key is 16 octets"), "{e}");
        let e = server(r#"{"config_id": 0, "server_id": "c4", "nonce_length": 4, "key": "00"}"#)
            .unwrap_err();
        assert!(e.contains("unknown field `key`"), "{e}");
    }

    #[test]
    fn format_config_errors_name_the_field() {
        let c = CidFormatConfig {
            config_id: ConfigId::new(0).unwrap(),
            server_id_length: 0,
            nonce_length: 4,
            cid_key: None,
            first_octet_encodes_cid_length: false,
        };
        let e = CidFormat::try_from(&c).unwrap_err();
        assert_eq!(e.path, "server_id_length");
        let c = CidFormatConfig {
            server_id_length: 1,
            nonce_length: 19,
            ..c
        };
        assert_eq!(CidFormat::try_from(&c).unwrap_err().path, "nonce_length");
    }

    #[test]
    fn configs_round_trip_through_serde() {
        let c = QuicLbConfig {
            config_id: ConfigId::new(3).unwrap(),
            server_id: ServerId::from_hex("0a0b").unwrap(),
            nonce_length: 6,
            cid_key: Some(CidKey::new([0x11; 16])),
            first_octet_encodes_cid_length: true,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains(r#""server_id":"0a0b""#), "{text}");
        assert_eq!(serde_json::from_str::<QuicLbConfig>(&text).unwrap(), c);
        assert!(!format!("{c:?}").contains("1111"));
    }
}
