//! A cluster's `transport_socket`: Envoy's `UpstreamTlsContext` onto proxy-tls's
//! `tls` transport (origination), its certificate and CAs named as SDS secrets;
//! `RawBuffer` is plain text.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::{
    config::core::v3::{config_source::ConfigSourceSpecifier, transport_socket, TransportSocket},
    extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, CommonTlsContext, SdsSecretConfig,
        UpstreamTlsContext,
    },
};
use proxy_core::config::TypedConfig;
use proxy_tls::config::{KeyPair, OriginationConfig, Roots};
use serde_json::json;

use super::{fields::Fields, refuse_leftover};
use crate::Refusal;

/// The type URL of `UpstreamTlsContext`.
const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// The type URL of `RawBuffer` (plain text).
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

const UPSTREAM_TLS: Fields = &[
    (1, "common_tls_context"),
    (2, "sni"),
    (3, "allow_renegotiation"),
    (4, "max_session_keys"),
    (5, "enforce_rsa_key_usage"),
    (6, "auto_host_sni"),
    (7, "auto_sni_san_validation"),
];

const COMMON_TLS: Fields = &[
    (1, "tls_params"),
    (2, "tls_certificates"),
    (3, "validation_context"),
    (4, "alpn_protocols"),
    (6, "tls_certificate_sds_secret_configs"),
    (7, "validation_context_sds_secret_config"),
    (8, "combined_validation_context"),
    (9, "tls_certificate_certificate_provider"),
    (10, "validation_context_certificate_provider"),
    (11, "tls_certificate_certificate_provider_instance"),
    (12, "validation_context_certificate_provider_instance"),
    (13, "custom_handshaker"),
    (14, "tls_certificate_provider_instance"),
    (15, "key_log"),
    (16, "custom_tls_certificate_selector"),
];

/// The cluster transport for `ts`: `None` for plain text (`RawBuffer`), else the
/// `tls` transport. Mapped: `sni` (the name sent and verified), the client
/// certificate as one SDS secret (`tls_certificate_sds_secret_configs`), the CAs as
/// an SDS secret (`validation_context_sds_secret_config`, or a
/// `combined_validation_context` whose default context is empty), `alpn_protocols`.
/// Without a validation context the server certificate is not verified, as in
/// Envoy. `max_session_keys` is ignored (resumption only). Refused, named: inline
/// certificates and validation contexts, certificate providers, TLS parameters,
/// SAN matchers, custom handshakers, key logs, renegotiation, `auto_host_sni`, and
/// every other field.
///
/// # Errors
/// A [`Refusal`] naming the field inside `transport_socket`.
/// The transport of `ts` and the SDS secrets it names.
pub(crate) type Transport = Option<(TypedConfig, BTreeSet<String>)>;

pub(crate) fn transport(ts: &TransportSocket) -> Result<Transport, Refusal> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        return Err(Refusal::new("", "typed_config", "missing"));
    };
    if any.type_url == RAW_BUFFER_TYPE {
        return Ok(None);
    }
    let ctx: UpstreamTlsContext = super::decode(any, UPSTREAM_TLS_TYPE, "")
        .map_err(|r| Refusal::new("", "typed_config", r.to_string()))?;
    let cfg = origination(&ctx).map_err(|r| r.within("typed_config"))?;
    let mut secrets = BTreeSet::new();
    if let Some(KeyPair::Secret(name)) = &cfg.client_cert {
        secrets.insert(name.clone());
    }
    if let Roots::Secret(name) = &cfg.roots {
        secrets.insert(name.clone());
    }
    let config = serde_json::to_value(&cfg)
        .map_err(|e| Refusal::new("", "typed_config", format!("cannot be represented: {e}")))?;
    proxy_core::config::from_value(&json!({ "typed": "tls", "config": config }))
        .map(|t| Some((t, secrets)))
        .map_err(|e| Refusal::new("", "typed_config", e))
}

fn origination(ctx: &UpstreamTlsContext) -> Result<OriginationConfig, Refusal> {
    let mut rest = ctx.clone();
    rest.common_tls_context = None;
    rest.sni.clear();
    rest.max_session_keys = None;
    refuse_leftover(&rest, UPSTREAM_TLS)?;
    let mut cfg = OriginationConfig::new(Roots::System);
    if !ctx.sni.is_empty() {
        cfg.server_name = Some(ctx.sni.clone());
    }
    let common = ctx.common_tls_context.clone().unwrap_or_default();
    common_tls(&common, &mut cfg).map_err(|r| r.within("common_tls_context"))?;
    Ok(cfg)
}

fn common_tls(c: &CommonTlsContext, cfg: &mut OriginationConfig) -> Result<(), Refusal> {
    let mut rest = c.clone();
    rest.tls_certificate_sds_secret_configs.clear();
    rest.validation_context_type = None;
    rest.alpn_protocols.clear();
    refuse_leftover(&rest, COMMON_TLS)?;
    match c.tls_certificate_sds_secret_configs.as_slice() {
        [] => {}
        [one] => {
            let name =
                secret_name(one).map_err(|r| r.within("tls_certificate_sds_secret_configs[0]"))?;
            cfg.client_cert = Some(KeyPair::secret(name));
        }
        _ => {
            return Err(Refusal::new(
                "",
                "tls_certificate_sds_secret_configs",
                "more than one client certificate is not supported",
            ))
        }
    }
    cfg.alpn.clone_from(&c.alpn_protocols);
    match &c.validation_context_type {
        // Envoy verifies nothing without a validation context.
        None => cfg.verify = false,
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            let name =
                secret_name(s).map_err(|r| r.within("validation_context_sds_secret_config"))?;
            cfg.roots = Roots::secret(name);
        }
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            let at = "combined_validation_context";
            if combined
                .default_validation_context
                .as_ref()
                .is_some_and(|d| *d != Default::default())
            {
                return Err(Refusal::new(
                    "",
                    format!("{at}.default_validation_context"),
                    "not supported: SAN matchers, pins and CRLs are not mapped",
                ));
            }
            let mut rest = combined.clone();
            rest.default_validation_context = None;
            rest.validation_context_sds_secret_config = None;
            if rest != Default::default() {
                return Err(Refusal::new(
                    "",
                    at,
                    "certificate providers are not supported",
                ));
            }
            let s = combined
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or_else(|| {
                    Refusal::new(
                        "",
                        format!("{at}.validation_context_sds_secret_config"),
                        "missing",
                    )
                })?;
            let name = secret_name(s)
                .map_err(|r| r.within(&format!("{at}.validation_context_sds_secret_config")))?;
            cfg.roots = Roots::secret(name);
        }
        Some(ValidationContextType::ValidationContext(_)) => return Err(Refusal::new(
            "",
            "validation_context",
            "not supported: give the CAs as an SDS secret (validation_context_sds_secret_config)",
        )),
        Some(_) => {
            return Err(Refusal::new(
                "",
                "validation_context_certificate_provider",
                "certificate providers are not supported",
            ))
        }
    }
    Ok(())
}

/// The name of an SDS secret delivered over ADS (or the stream it came on).
fn secret_name(s: &SdsSecretConfig) -> Result<String, Refusal> {
    if s.name.is_empty() {
        return Err(Refusal::new("", "name", "must not be empty"));
    }
    match s
        .sds_config
        .as_ref()
        .and_then(|c| c.config_source_specifier.as_ref())
    {
        None | Some(ConfigSourceSpecifier::Ads(_)) | Some(ConfigSourceSpecifier::Self_(_)) => {
            Ok(s.name.clone())
        }
        Some(_) => Err(Refusal::new(
            "",
            "sds_config",
            "only ADS (or the same stream) is supported",
        )),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::{
        envoy::extensions::transport_sockets::tls::v3::{
            common_tls_context::CombinedCertificateValidationContext, CertificateValidationContext,
        },
        google::protobuf::Any,
    };
    use prost::Message;

    use super::*;

    fn socket(type_url: &str, value: Vec<u8>) -> TransportSocket {
        TransportSocket {
            name: "t".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                type_url: type_url.into(),
                value,
            })),
        }
    }

    fn tls(common: CommonTlsContext) -> TransportSocket {
        let ctx = UpstreamTlsContext {
            sni: "up.test".into(),
            common_tls_context: Some(common),
            ..UpstreamTlsContext::default()
        };
        socket(UPSTREAM_TLS_TYPE, ctx.encode_to_vec())
    }

    #[test]
    fn upstream_tls_maps_onto_the_tls_transport_or_names_the_field() {
        assert_eq!(transport(&socket(RAW_BUFFER_TYPE, Vec::new())), Ok(None));

        let combined = CombinedCertificateValidationContext {
            validation_context_sds_secret_config: Some(SdsSecretConfig {
                name: "ROOTCA".into(),
                sds_config: None,
            }),
            ..CombinedCertificateValidationContext::default()
        };
        let ok = tls(CommonTlsContext {
            alpn_protocols: vec!["h2".into()],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                combined.clone(),
            )),
            ..CommonTlsContext::default()
        });
        let (t, secrets) = transport(&ok).unwrap().unwrap();
        assert_eq!(secrets, BTreeSet::from(["ROOTCA".to_owned()]));
        assert_eq!(t.typed, "tls");
        let cfg: OriginationConfig = t.config.parse().unwrap();
        assert_eq!(cfg.server_name.as_deref(), Some("up.test"));
        assert_eq!(cfg.roots, Roots::secret("ROOTCA"));
        assert_eq!(cfg.alpn, ["h2"]);
        assert!(cfg.verify && cfg.client_cert.is_none());

        let unverified = transport(&tls(CommonTlsContext::default()))
            .unwrap()
            .unwrap();
        let cfg: OriginationConfig = unverified.0.config.parse().unwrap();
        assert!(
            !cfg.verify,
            "Envoy verifies nothing without a validation context"
        );

        let refused = |ts: TransportSocket| transport(&ts).unwrap_err().to_string();
        let mut sans = combined;
        sans.default_validation_context = Some(CertificateValidationContext {
            verify_certificate_spki: vec!["pin".into()],
            ..CertificateValidationContext::default()
        });
        assert!(refused(tls(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(sans)),
            ..CommonTlsContext::default()
        }))
        .starts_with("typed_config.common_tls_context.combined_validation_context.default_validation_context: not supported"));
        assert!(refused(tls(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext::default()
            )),
            ..CommonTlsContext::default()
        }))
        .starts_with("typed_config.common_tls_context.validation_context: not supported"));
        assert!(
            refused(socket("type.googleapis.com/example.Other", Vec::new()))
                .starts_with("typed_config: ")
        );
        let two = tls(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig::default(); 2],
            ..CommonTlsContext::default()
        });
        assert!(refused(two).contains("tls_certificate_sds_secret_configs: more than one"));
    }
}
