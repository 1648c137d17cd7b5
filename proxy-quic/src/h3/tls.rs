//! The TLS side of an HTTP/3 listener: a rustls server config for QUIC.

use std::sync::Arc;

use rustls::{sign::SingleCertAndKey, ServerConfig};

use super::H3Error;

/// The ALPN protocol identifier of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// A rustls server config for an [`H3Listener`](super::H3Listener): TLS 1.3 only
/// (QUIC has no other), the ring provider, ALPN `h3`, no client certificates, 0-RTT
/// off. The certificate chain and key are PEM, loaded and checked by proxy-tls
/// ([`proxy_tls::material::certified_key`]: the chain parses, the key matches the
/// leaf, the leaf is valid now), the same loading as the TCP listeners' TLS.
///
/// # Example
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let config = proxy_quic::h3::server_config(
///     cert.cert.pem().as_bytes(),
///     cert.key_pair.serialize_pem().as_bytes(),
/// )
/// .unwrap();
/// assert_eq!(config.alpn_protocols, [b"h3".to_vec()]);
/// ```
///
/// # Errors
/// [`H3Error::Material`] when the chain or the key does not load,
/// [`H3Error::Rustls`] if rustls refuses TLS 1.3 with the ring provider.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, H3Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key =
        proxy_tls::material::certified_key(cert_pem, "certificate", key_pem, "key", &provider)
            .map_err(H3Error::Material)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(H3Error::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ALPN_H3.to_vec()];
    Ok(config)
}

/// The QUIC crypto config of `config`: ALPN `h3` (added when the config names no
/// protocol; refused when it names others only) and 0-RTT off.
pub(super) fn quic_crypto(
    mut config: ServerConfig,
) -> Result<quinn::crypto::rustls::QuicServerConfig, H3Error> {
    if config.alpn_protocols.is_empty() {
        config.alpn_protocols = vec![ALPN_H3.to_vec()];
    } else if !config.alpn_protocols.iter().any(|p| p == ALPN_H3) {
        return Err(H3Error::Alpn);
    }
    // 0-RTT stays off until replay protection exists (quinn reads 0 as "off").
    config.max_early_data_size = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(H3Error::CipherSuite)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pem() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn builds_tls13_h3_configs() {
        let (cert, key) = pem();
        let config = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(config.max_early_data_size, 0);
        assert!(quic_crypto(config).is_ok());
    }

    #[test]
    fn refuses_configs_without_h3_and_bad_material() {
        let (cert, key) = pem();
        let mut config = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        assert!(matches!(quic_crypto(config), Err(H3Error::Alpn)));
        let err = server_config(b"not pem", key.as_bytes()).unwrap_err();
        assert!(matches!(err, H3Error::Material(_)), "{err:?}");
        let (_, other_key) = pem();
        let err = server_config(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(err, H3Error::Material(_)), "{err:?}");
    }
}
