//! `envoy.extensions.filters.http.fault.v3.HTTPFault` onto proxy-filters' `fault`.
//!
//! `delay.fixed_delay` with its `percentage` becomes `delay: {duration,
//! delay_percent}`, `abort.http_status` with its `percentage` `abort: {status,
//! abort_percent}`; a `percentage` is required (Envoy's default for an absent one is
//! easy to misread) and is kept to a millionth. `max_active_faults` becomes
//! `max_active`, which here bounds the requests being delayed (an abort holds
//! nothing open). Envoy's runtime keys change nothing without a runtime layer, which
//! this proxy does not have, and downstream cluster stats are statistics: both are
//! accepted. Refused by their path: header-controlled delays and aborts (this
//! proxy's fault headers only lower a configured percentage), gRPC aborts, a
//! response body, matching on headers, downstream nodes or upstream cluster,
//! response rate limits and filter metadata.

use envoy_types::pb::envoy::{
    extensions::filters::{
        common::fault::v3::{fault_delay::FaultDelaySecifier, FaultDelay},
        http::fault::v3::{fault_abort::ErrorType, FaultAbort, HttpFault},
    },
    r#type::v3::{fractional_percent::DenominatorType, FractionalPercent},
};
use serde_json::{json, Value};

use super::{super::duration, super::refuse_leftover, fields};
use crate::Refusal;

/// The type URL of Envoy's HTTP fault filter config.
pub(crate) const TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// The `fault` section of an Envoy `HTTPFault`.
pub(crate) fn fault(f: &HttpFault) -> Result<Value, Refusal> {
    let mut rest = f.clone();
    rest.delay = None;
    rest.abort = None;
    rest.max_active_faults = None;
    rest.delay_percent_runtime.clear();
    rest.abort_percent_runtime.clear();
    rest.delay_duration_runtime.clear();
    rest.abort_http_status_runtime.clear();
    rest.max_active_faults_runtime.clear();
    rest.response_rate_limit_percent_runtime.clear();
    rest.abort_grpc_status_runtime.clear();
    rest.disable_downstream_cluster_stats = false;
    refuse_leftover(&rest, fields::HTTP_FAULT)?;
    let mut out = json!({});
    if let Some(d) = &f.delay {
        out["delay"] = delay(d).map_err(|e| e.within("delay"))?;
    }
    if let Some(a) = &f.abort {
        out["abort"] = abort(a).map_err(|e| e.within("abort"))?;
    }
    if let Some(m) = &f.max_active_faults {
        if m.value == 0 {
            return Err(Refusal::new("", "max_active_faults", "must be at least 1"));
        }
        out["max_active"] = json!(m.value);
    }
    Ok(out)
}

fn delay(d: &FaultDelay) -> Result<Value, Refusal> {
    let mut rest = *d;
    rest.percentage = None;
    if matches!(
        rest.fault_delay_secifier,
        Some(FaultDelaySecifier::FixedDelay(_))
    ) {
        rest.fault_delay_secifier = None;
    }
    refuse_leftover(&rest, fields::FAULT_DELAY)?;
    let Some(FaultDelaySecifier::FixedDelay(fixed)) = &d.fault_delay_secifier else {
        return Err(Refusal::new("", "fixed_delay", "is required"));
    };
    let fixed = duration(fixed).map_err(|e| Refusal::new("", "fixed_delay", e))?;
    Ok(json!({
        "duration": super::human(fixed),
        "delay_percent": percent(d.percentage.as_ref())?,
    }))
}

fn abort(a: &FaultAbort) -> Result<Value, Refusal> {
    let mut rest = a.clone();
    rest.percentage = None;
    if matches!(rest.error_type, Some(ErrorType::HttpStatus(_))) {
        rest.error_type = None;
    }
    refuse_leftover(&rest, fields::FAULT_ABORT)?;
    let Some(ErrorType::HttpStatus(status)) = a.error_type else {
        return Err(Refusal::new("", "http_status", "is required"));
    };
    Ok(json!({ "status": status, "abort_percent": percent(a.percentage.as_ref())? }))
}

/// A fractional percent as a number from 0 to 100.
fn percent(p: Option<&FractionalPercent>) -> Result<f64, Refusal> {
    let p = p.ok_or_else(|| Refusal::new("", "percentage", "is required"))?;
    let whole = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 100.0,
        Ok(DenominatorType::TenThousand) => 10_000.0,
        Ok(DenominatorType::Million) => 1_000_000.0,
        Err(_) => {
            return Err(Refusal::new(
                "",
                "percentage.denominator",
                "unknown denominator",
            ))
        }
    };
    Ok((f64::from(p.numerator) / whole * 100.0).min(100.0))
}
