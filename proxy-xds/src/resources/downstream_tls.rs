//! A listener filter chain's `transport_socket`: Envoy's `DownstreamTlsContext`
//! onto proxy-tls's `tls` network filter (termination), its certificates and
//! client CAs named as SDS secrets; `RawBuffer` is plain text.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::{
    config::core::v3::{transport_socket, TransportSocket},
    extensions::transport_sockets::tls::v3::DownstreamTlsContext,
};
use proxy_core::config::TypedConfig;
use proxy_tls::config::{CertificateConfig, ClientAuthConfig, Roots, TerminationConfig};
use serde_json::json;

use super::{fields::Fields, refuse_leftover, tls_common::common_tls};
use crate::Refusal;

const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

const DOWNSTREAM_TLS: Fields = &[
    (1, "common_tls_context"),
    (2, "require_client_certificate"),
    (3, "require_sni"),
    (4, "session_ticket_keys"),
    (5, "session_ticket_keys_sds_secret_config"),
    (6, "session_timeout"),
    (7, "disable_stateless_session_resumption"),
    (8, "ocsp_staple_policy"),
    (9, "full_scan_certs_on_sni_mismatch"),
    (10, "disable_stateful_session_resumption"),
    (11, "prefer_client_ciphers"),
];

/// The `tls` network filter for `ts` and the SDS secrets it names; `None` for plain
/// text (`RawBuffer`). Mapped: the server certificates as SDS secrets (the first
/// serves clients whose SNI matches none), the client CAs as an SDS secret
/// (client certificates then verified when presented, required with
/// `require_client_certificate`), `alpn_protocols`. Refused, named: inline
/// material, TLS parameters, session ticket settings, OCSP policies, SNI
/// requirements and every other field.
///
/// # Errors
/// A [`Refusal`] naming the field inside `transport_socket`.
pub(crate) fn termination(
    ts: &TransportSocket,
) -> Result<Option<(TypedConfig, BTreeSet<String>)>, Refusal> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        return Err(Refusal::new("", "typed_config", "missing"));
    };
    if any.type_url == RAW_BUFFER_TYPE {
        return Ok(None);
    }
    let ctx: DownstreamTlsContext = super::decode(any, DOWNSTREAM_TLS_TYPE, "")
        .map_err(|r| Refusal::new("", "typed_config", r.to_string()))?;
    let (cfg, secrets) = config(&ctx).map_err(|r| r.within("typed_config"))?;
    let config = serde_json::to_value(&cfg)
        .map_err(|e| Refusal::new("", "typed_config", format!("cannot be represented: {e}")))?;
    proxy_core::config::from_value(&json!({ "typed": "tls", "config": config }))
        .map(|t| Some((t, secrets)))
        .map_err(|e| Refusal::new("", "typed_config", e))
}

fn config(ctx: &DownstreamTlsContext) -> Result<(TerminationConfig, BTreeSet<String>), Refusal> {
    let mut rest = ctx.clone();
    rest.common_tls_context = None;
    rest.require_client_certificate = None;
    refuse_leftover(&rest, DOWNSTREAM_TLS)?;
    let common = common_tls(&ctx.common_tls_context.clone().unwrap_or_default())
        .map_err(|r| r.within("common_tls_context"))?;
    if common.certificates.is_empty() {
        return Err(Refusal::new(
            "",
            "common_tls_context.tls_certificate_sds_secret_configs",
            "a server certificate is needed",
        ));
    }
    if !common.sans.is_empty() {
        return Err(Refusal::new(
            "",
            "common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names",
            "not supported for client certificates: match the peer identity with RBAC",
        ));
    }
    let mut secrets: BTreeSet<String> = common.certificates.iter().cloned().collect();
    let certificates = common
        .certificates
        .iter()
        .map(|name| CertificateConfig::secret(name.clone()))
        .collect();
    let mut cfg = TerminationConfig::new(certificates);
    cfg.alpn = common.alpn;
    let required = ctx.require_client_certificate.is_some_and(|b| b.value);
    match common.roots {
        Some(name) => {
            secrets.insert(name.clone());
            let roots = Roots::secret(name);
            cfg.client_auth = Some(if required {
                ClientAuthConfig::required(roots)
            } else {
                ClientAuthConfig::optional(roots)
            });
        }
        None if required => {
            return Err(Refusal::new(
                "",
                "require_client_certificate",
                "needs a validation context (the client CAs)",
            ))
        }
        None => {}
    }
    Ok((cfg, secrets))
}
