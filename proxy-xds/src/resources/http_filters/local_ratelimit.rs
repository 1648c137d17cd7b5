//! `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit` onto
//! proxy-filters' `local_rate_limit`.
//!
//! The token bucket becomes the filter's `rate`: `tokens_per_fill` (default 1)
//! requests per `fill_interval`, a burst of `max_tokens`. Envoy refills the bucket
//! in steps at each interval; this proxy refills it smoothly (GCRA) at the same
//! average rate: a client never gets more than `max_tokens` at once nor more than
//! the rate over time, but may get a token earlier than at Envoy's next fill.
//!
//! Envoy's filter limits nothing unless `filter_enabled` and `filter_enforced` are
//! set: absent or at 0% the filter is left out (it only counts in Envoy); at 100%
//! it is mapped; any other fraction is refused. `status` may only be 429 (this
//! proxy's answer). This proxy always sends `retry-after` (Envoy only with
//! `enable_retry_after_header`) and maps the 429 to gRPC `RESOURCE_EXHAUSTED`
//! (Envoy's default is `UNAVAILABLE`, `rate_limited_as_resource_exhausted` is
//! accepted either way). Descriptors, rate limit actions, per-connection and
//! cluster-wide buckets, response headers and `x-ratelimit-*` headers are refused
//! by their path.

use envoy_types::pb::envoy::{
    config::core::v3::RuntimeFractionalPercent,
    extensions::filters::http::local_ratelimit::v3::LocalRateLimit,
    r#type::v3::{fractional_percent::DenominatorType, FractionalPercent},
};
use serde_json::{json, Value};

use super::{super::duration, super::refuse_leftover, fields};
use crate::Refusal;

/// The type URL of Envoy's HTTP local rate limit filter config.
pub(crate) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// The `local_rate_limit` section of an Envoy `LocalRateLimit`, or `None` when the
/// config enforces nothing (the filter is then left out).
pub(crate) fn local_rate_limit(l: &LocalRateLimit) -> Result<Option<Value>, Refusal> {
    let mut rest = l.clone();
    rest.stat_prefix.clear();
    rest.token_bucket = None;
    rest.filter_enabled = None;
    rest.filter_enforced = None;
    rest.rate_limited_as_resource_exhausted = false;
    rest.enable_retry_after_header = false;
    // Only used with descriptors, which are refused.
    rest.always_consume_default_token_bucket = None;
    if l.status.as_ref().is_some_and(|s| s.code == 429) {
        rest.status = None;
    }
    refuse_leftover(&rest, fields::LOCAL_RATE_LIMIT)?;
    let enabled = percent(l.filter_enabled.as_ref(), "filter_enabled")?;
    let enforced = percent(l.filter_enforced.as_ref(), "filter_enforced")?;
    if !enabled || !enforced {
        return Ok(None);
    }
    let bucket = l
        .token_bucket
        .as_ref()
        .ok_or_else(|| Refusal::new("", "token_bucket", "is required"))?;
    let mut rest = *bucket;
    rest.max_tokens = 0;
    rest.tokens_per_fill = None;
    rest.fill_interval = None;
    refuse_leftover(&rest, fields::TOKEN_BUCKET).map_err(|e| e.within("token_bucket"))?;
    if bucket.max_tokens == 0 {
        return Err(Refusal::new(
            "",
            "token_bucket.max_tokens",
            "must be at least 1",
        ));
    }
    let per_fill = bucket.tokens_per_fill.as_ref().map_or(1, |t| t.value);
    if per_fill == 0 {
        return Err(Refusal::new(
            "",
            "token_bucket.tokens_per_fill",
            "must be at least 1",
        ));
    }
    let interval = bucket
        .fill_interval
        .as_ref()
        .ok_or_else(|| Refusal::new("", "token_bucket.fill_interval", "is required"))
        .and_then(|d| duration(d).map_err(|e| Refusal::new("", "token_bucket.fill_interval", e)))?;
    if interval.is_zero() {
        return Err(Refusal::new(
            "",
            "token_bucket.fill_interval",
            "must be more than 0",
        ));
    }
    Ok(Some(json!({
        "rate": {
            "requests": per_fill,
            "per": super::human(interval),
            "burst": bucket.max_tokens,
        }
    })))
}

/// Whether a runtime fraction is 100% (`true`) or absent/0% (`false`); refused
/// otherwise.
fn percent(p: Option<&RuntimeFractionalPercent>, field: &str) -> Result<bool, Refusal> {
    let Some(p) = p else { return Ok(false) };
    let f: FractionalPercent = p.default_value.unwrap_or_default();
    let whole = match DenominatorType::try_from(f.denominator) {
        Ok(DenominatorType::Hundred) => 100,
        Ok(DenominatorType::TenThousand) => 10_000,
        Ok(DenominatorType::Million) => 1_000_000,
        Err(_) => {
            return Err(Refusal::new(
                "",
                format!("{field}.default_value.denominator"),
                "unknown denominator",
            ))
        }
    };
    match f.numerator {
        0 => Ok(false),
        n if n >= whole => Ok(true),
        _ => Err(Refusal::new(
            "",
            format!("{field}.default_value"),
            "only 0% and 100% are supported",
        )),
    }
}
