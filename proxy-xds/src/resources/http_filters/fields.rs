//! Field numbers and names of the Envoy filter configs whose unhandled fields are
//! refused: a field left over after translation is named in the NACK.

use super::super::fields::Fields;

/// `RBAC` (envoy.extensions.filters.http.rbac.v3).
pub(crate) const RBAC_FILTER: Fields = &[
    (1, "rules"),
    (2, "shadow_rules"),
    (3, "shadow_rules_stat_prefix"),
    (4, "matcher"),
    (5, "shadow_matcher"),
    (6, "rules_stat_prefix"),
    (7, "track_per_rule_stats"),
];
/// `RBAC` (envoy.config.rbac.v3).
pub(crate) const RBAC_RULES: Fields =
    &[(1, "action"), (2, "policies"), (3, "audit_logging_options")];
/// `Policy` (envoy.config.rbac.v3).
pub(crate) const RBAC_POLICY: Fields = &[
    (1, "permissions"),
    (2, "principals"),
    (3, "condition"),
    (4, "checked_condition"),
    (5, "cel_config"),
];
/// `LocalRateLimit` (envoy.extensions.filters.http.local_ratelimit.v3).
pub(crate) const LOCAL_RATE_LIMIT: Fields = &[
    (1, "stat_prefix"),
    (2, "status"),
    (3, "token_bucket"),
    (4, "filter_enabled"),
    (5, "filter_enforced"),
    (6, "response_headers_to_add"),
    (8, "descriptors"),
    (9, "stage"),
    (10, "request_headers_to_add_when_not_enforced"),
    (11, "local_rate_limit_per_downstream_connection"),
    (12, "enable_x_ratelimit_headers"),
    (13, "vh_rate_limits"),
    (14, "always_consume_default_token_bucket"),
    (15, "rate_limited_as_resource_exhausted"),
    (16, "local_cluster_rate_limit"),
    (17, "rate_limits"),
    (18, "max_dynamic_descriptors"),
    (19, "enable_retry_after_header"),
];
/// `TokenBucket` (envoy.type.v3).
pub(crate) const TOKEN_BUCKET: Fields = &[
    (1, "max_tokens"),
    (2, "tokens_per_fill"),
    (3, "fill_interval"),
];
/// `Lua` (envoy.extensions.filters.http.lua.v3).
pub(crate) const LUA: Fields = &[
    (1, "inline_code"),
    (2, "source_codes"),
    (3, "default_source_code"),
    (4, "stat_prefix"),
    (5, "clear_route_cache"),
    (6, "filter_context"),
    (7, "package_paths"),
    (8, "package_cpaths"),
];
/// `DataSource` (envoy.config.core.v3).
pub(crate) const DATA_SOURCE: Fields = &[
    (1, "filename"),
    (2, "inline_bytes"),
    (3, "inline_string"),
    (4, "environment_variable"),
    (5, "watched_directory"),
];
/// `JwtAuthentication` (envoy.extensions.filters.http.jwt_authn.v3).
pub(crate) const JWT_AUTHENTICATION: Fields = &[
    (1, "providers"),
    (2, "rules"),
    (3, "filter_state_rules"),
    (4, "bypass_cors_preflight"),
    (5, "requirement_map"),
    (6, "strip_failure_response"),
    (7, "stat_prefix"),
];
/// `JwtProvider` (envoy.extensions.filters.http.jwt_authn.v3).
pub(crate) const JWT_PROVIDER: Fields = &[
    (1, "issuer"),
    (2, "audiences"),
    (3, "remote_jwks"),
    (4, "local_jwks"),
    (5, "forward"),
    (6, "from_headers"),
    (7, "from_params"),
    (8, "forward_payload_header"),
    (9, "payload_in_metadata"),
    (10, "clock_skew_seconds"),
    (11, "pad_forward_payload_header"),
    (12, "jwt_cache_config"),
    (13, "from_cookies"),
    (14, "header_in_metadata"),
    (15, "claim_to_headers"),
    (16, "failed_status_in_metadata"),
    (17, "clear_route_cache"),
    (18, "normalize_payload_in_metadata"),
    (19, "subjects"),
    (20, "require_expiration"),
    (21, "max_lifetime"),
];
/// `RemoteJwks` (envoy.extensions.filters.http.jwt_authn.v3).
pub(crate) const REMOTE_JWKS: Fields = &[
    (1, "http_uri"),
    (2, "cache_duration"),
    (3, "async_fetch"),
    (4, "retry_policy"),
];
/// `HttpUri` (envoy.config.core.v3).
pub(crate) const HTTP_URI: Fields = &[(1, "uri"), (2, "cluster"), (3, "timeout")];
/// `JwtClaimToHeader` (envoy.extensions.filters.http.jwt_authn.v3).
pub(crate) const CLAIM_TO_HEADER: Fields =
    &[(1, "header_name"), (2, "claim_name"), (3, "claim_path")];
/// `LuaPerRoute` (envoy.extensions.filters.http.lua.v3).
pub(crate) const LUA_PER_ROUTE: Fields = &[
    (1, "disabled"),
    (2, "name"),
    (3, "source_code"),
    (4, "filter_context"),
    (5, "package_paths"),
    (6, "package_cpaths"),
];
/// `FilterConfig` (envoy.config.route.v3).
pub(crate) const FILTER_CONFIG: Fields = &[(1, "config"), (2, "is_optional"), (3, "disabled")];
/// `HTTPFault` (envoy.extensions.filters.http.fault.v3).
pub(crate) const HTTP_FAULT: Fields = &[
    (1, "delay"),
    (2, "abort"),
    (3, "upstream_cluster"),
    (4, "headers"),
    (5, "downstream_nodes"),
    (6, "max_active_faults"),
    (7, "response_rate_limit"),
    (8, "delay_percent_runtime"),
    (9, "abort_percent_runtime"),
    (10, "delay_duration_runtime"),
    (11, "abort_http_status_runtime"),
    (12, "max_active_faults_runtime"),
    (13, "response_rate_limit_percent_runtime"),
    (14, "abort_grpc_status_runtime"),
    (15, "disable_downstream_cluster_stats"),
    (16, "filter_metadata"),
];
/// `FaultAbort` (envoy.extensions.filters.http.fault.v3).
pub(crate) const FAULT_ABORT: Fields = &[
    (2, "http_status"),
    (3, "percentage"),
    (4, "header_abort"),
    (5, "grpc_status"),
    (6, "response_body"),
];
/// `FaultDelay` (envoy.extensions.filters.common.fault.v3).
pub(crate) const FAULT_DELAY: Fields =
    &[(3, "fixed_delay"), (4, "percentage"), (5, "header_delay")];
