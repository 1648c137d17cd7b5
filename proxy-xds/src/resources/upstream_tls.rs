//! A cluster's `transport_socket`: Envoy's `UpstreamTlsContext` onto proxy-tls's
//! `tls` transport (origination), its certificate and CAs named as SDS secrets;
//! `RawBuffer` is plain text.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::{
    config::core::v3::{transport_socket, TransportSocket},
    extensions::transport_sockets::tls::v3::{CommonTlsContext, UpstreamTlsContext},
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

/// The cluster transport for `ts`: `None` for plain text (`RawBuffer`), else the
/// `tls` transport. Mapped: `sni` (the name sent and verified), the client
/// certificate as one SDS secret (`tls_certificate_sds_secret_configs`), the CAs as
/// an SDS secret (`validation_context_sds_secret_config`, or a
/// `combined_validation_context` whose default context is empty), `alpn_protocols`.
/// Without a validation context the server certificate is not verified, as in
/// Envoy. The SAN matchers of a combined context's default context
/// (`match_typed_subject_alt_names` DNS and URI, the deprecated
/// `match_subject_alt_names` against DNS and URI SANs) become proxy-tls's
/// `subject_alt_names`: the certificate must hold a matching SAN and its names are
/// not checked against the SNI, as in Envoy. `max_session_keys` is ignored
/// (resumption only). Refused, named: inline certificates and validation contexts,
/// certificate providers, TLS parameters, pins, CRLs, custom handshakers, key logs,
/// renegotiation, `auto_host_sni`, and every other field.
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
    let common = super::tls_common::common_tls(c)?;
    match common.certificates.as_slice() {
        [] => {}
        [one] => cfg.client_cert = Some(KeyPair::secret(one.clone())),
        _ => {
            return Err(Refusal::new(
                "",
                "tls_certificate_sds_secret_configs",
                "more than one client certificate is not supported",
            ))
        }
    }
    cfg.alpn = common.alpn;
    cfg.subject_alt_names = common.sans;
    match common.roots {
        Some(name) => cfg.roots = Roots::secret(name),
        // Envoy verifies nothing without a validation context.
        None => cfg.verify = false,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::{
        envoy::extensions::transport_sockets::tls::v3::{
            common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
            CertificateValidationContext, SdsSecretConfig,
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

    fn with_sans(v: CertificateValidationContext) -> Result<OriginationConfig, String> {
        let combined = CombinedCertificateValidationContext {
            validation_context_sds_secret_config: Some(SdsSecretConfig {
                name: "ROOTCA".into(),
                sds_config: None,
            }),
            default_validation_context: Some(v),
            ..CombinedCertificateValidationContext::default()
        };
        let ts = tls(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                combined,
            )),
            ..CommonTlsContext::default()
        });
        match transport(&ts) {
            Ok(Some((t, _))) => Ok(t.config.parse().expect("proxy-tls parses it")),
            Ok(None) => Err("plain text".into()),
            Err(r) => Err(r.to_string()),
        }
    }

    #[test]
    fn san_matchers_map_onto_subject_alt_names() {
        use envoy_types::pb::envoy::{
            extensions::transport_sockets::tls::v3::{
                subject_alt_name_matcher::SanType, SubjectAltNameMatcher,
            },
            r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
        };
        use proxy_core::matcher::StringMatch;
        use proxy_tls::san::SanMatch;

        let exact = |v: &str| StringMatcher {
            match_pattern: Some(MatchPattern::Exact(v.into())),
            ignore_case: false,
        };
        let typed = |t: SanType, v: &str| SubjectAltNameMatcher {
            san_type: t as i32,
            matcher: Some(exact(v)),
            oid: String::new(),
        };
        let spiffe = "spiffe://cluster.local/ns/default/sa/web";
        #[allow(deprecated)]
        let cfg = with_sans(CertificateValidationContext {
            match_typed_subject_alt_names: vec![
                typed(SanType::Uri, spiffe),
                typed(SanType::Dns, "web.default.svc"),
            ],
            match_subject_alt_names: vec![exact("legacy")],
            ..CertificateValidationContext::default()
        })
        .unwrap();
        assert_eq!(
            cfg.subject_alt_names,
            [
                SanMatch::Uri(StringMatch::Exact(spiffe.into())),
                SanMatch::Dns(StringMatch::Exact("web.default.svc".into())),
                SanMatch::Dns(StringMatch::Exact("legacy".into())),
                SanMatch::Uri(StringMatch::Exact("legacy".into())),
            ]
        );
        assert!(cfg.verify);
        cfg.validate().expect("proxy-tls accepts it");

        let prefix = "typed_config.common_tls_context.combined_validation_context.\
                      default_validation_context.";
        let err = with_sans(CertificateValidationContext {
            match_typed_subject_alt_names: vec![typed(SanType::Email, "a@b")],
            ..CertificateValidationContext::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "{prefix}match_typed_subject_alt_names[0].san_type: EMAIL is not supported (DNS and URI are)"
            )
        );
        let err = with_sans(CertificateValidationContext {
            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                san_type: SanType::Uri as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(spiffe.into())),
                    ignore_case: true,
                }),
                oid: String::new(),
            }],
            ..CertificateValidationContext::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{prefix}match_typed_subject_alt_names[0].matcher.ignore_case: not supported"
            )),
            "{err}"
        );
        let err = with_sans(CertificateValidationContext {
            match_typed_subject_alt_names: vec![typed(SanType::Uri, spiffe)],
            allow_expired_certificate: true,
            ..CertificateValidationContext::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with(&format!("{prefix}allow_expired_certificate: not supported")),
            "{err}"
        );
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
        .starts_with("typed_config.common_tls_context.combined_validation_context.default_validation_context.verify_certificate_spki: not supported"));
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
            tls_certificate_sds_secret_configs: vec![
                SdsSecretConfig {
                    name: "one".into(),
                    sds_config: None,
                };
                2
            ],
            ..CommonTlsContext::default()
        });
        assert!(refused(two).contains("tls_certificate_sds_secret_configs: more than one"));
    }
}
