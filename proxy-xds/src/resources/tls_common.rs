//! What upstream and downstream TLS contexts share: `CommonTlsContext`, its
//! certificates and CAs as SDS secrets.

use envoy_types::pb::envoy::{
    config::core::v3::config_source::ConfigSourceSpecifier,
    extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
        CertificateValidationContext, CommonTlsContext, SdsSecretConfig,
    },
};
use proxy_tls::san::SanMatch;

use super::{fields::Fields, refuse_leftover, secret::VALIDATION_CONTEXT};
use crate::Refusal;

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

/// A `CommonTlsContext` as this proxy takes it: certificates and CAs named as SDS
/// secrets, ALPN protocols.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CommonTls {
    /// `tls_certificate_sds_secret_configs`, by name.
    pub(crate) certificates: Vec<String>,
    /// The CAs' secret (`validation_context_sds_secret_config`, or a combined
    /// context whose default context is empty); `None`: no validation context.
    pub(crate) roots: Option<String>,
    /// `alpn_protocols`.
    pub(crate) alpn: Vec<String>,
    /// The SAN matchers of a combined context's default context
    /// (`match_typed_subject_alt_names`, `match_subject_alt_names`).
    pub(crate) sans: Vec<SanMatch>,
}

/// The SAN matchers of a default validation context; every other field of it is
/// refused. A typed matcher maps by its type (DNS, URI; EMAIL, IP_ADDRESS and
/// OTHER_NAME are refused); a deprecated untyped one matches DNS and URI SANs.
fn san_matchers(v: &CertificateValidationContext) -> Result<Vec<SanMatch>, Refusal> {
    let mut rest = v.clone();
    rest.match_typed_subject_alt_names.clear();
    #[allow(deprecated)]
    rest.match_subject_alt_names.clear();
    refuse_leftover(&rest, VALIDATION_CONTEXT)?;
    let mut out = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let at = format!("match_typed_subject_alt_names[{i}]");
        let matcher = m
            .matcher
            .as_ref()
            .ok_or_else(|| Refusal::new("", format!("{at}.matcher"), "missing"))?;
        let matcher = super::matchers::string_match(matcher)
            .map_err(|r| r.within(&format!("{at}.matcher")))?;
        out.push(match SanType::try_from(m.san_type) {
            Ok(SanType::Dns) => SanMatch::Dns(matcher),
            Ok(SanType::Uri) => SanMatch::Uri(matcher),
            Ok(other) => {
                return Err(Refusal::new(
                    "",
                    format!("{at}.san_type"),
                    format!("{} is not supported (DNS and URI are)", other.as_str_name()),
                ))
            }
            Err(_) => {
                return Err(Refusal::new(
                    "",
                    format!("{at}.san_type"),
                    format!("unknown SAN type {}", m.san_type),
                ))
            }
        });
    }
    #[allow(deprecated)]
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let matcher = super::matchers::string_match(m)
            .map_err(|r| r.within(&format!("match_subject_alt_names[{i}]")))?;
        out.push(SanMatch::Dns(matcher.clone()));
        out.push(SanMatch::Uri(matcher));
    }
    Ok(out)
}

/// Takes a `CommonTlsContext`: certificates and the validation context as SDS
/// secrets over ADS, ALPN, the SAN matchers of a combined context's default context;
/// refuses inline material, certificate providers, TLS parameters, pins, CRLs and
/// every other field, named.
pub(crate) fn common_tls(c: &CommonTlsContext) -> Result<CommonTls, Refusal> {
    let mut rest = c.clone();
    rest.tls_certificate_sds_secret_configs.clear();
    rest.validation_context_type = None;
    rest.alpn_protocols.clear();
    refuse_leftover(&rest, COMMON_TLS)?;
    let mut out = CommonTls {
        alpn: c.alpn_protocols.clone(),
        ..CommonTls::default()
    };
    for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
        let at = format!("tls_certificate_sds_secret_configs[{i}]");
        out.certificates
            .push(secret_name(s).map_err(|r| r.within(&at))?);
    }
    match &c.validation_context_type {
        None => {}
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            let name =
                secret_name(s).map_err(|r| r.within("validation_context_sds_secret_config"))?;
            out.roots = Some(name);
        }
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            let at = "combined_validation_context";
            if let Some(d) = &combined.default_validation_context {
                out.sans = san_matchers(d)
                    .map_err(|r| r.within(&format!("{at}.default_validation_context")))?;
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
            let at = format!("{at}.validation_context_sds_secret_config");
            let s = combined
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or_else(|| Refusal::new("", &at, "missing"))?;
            out.roots = Some(secret_name(s).map_err(|r| r.within(&at))?);
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
    Ok(out)
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
