//! The zone decision for one request: forwarded zone, uid mapping, zone cookie or a
//! weighted random zone, then failover to the first available zone. Pure.

use http::HeaderMap;

use super::topology::{FailoverStep, Topology, ZoneId};

/// What the request says about its zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneInputs<'a> {
    /// The zone a peer proxy forwarded the request for.
    pub forwarded: Option<&'a str>,
    /// The user id.
    pub uid: Option<&'a str>,
    /// The zone cookie's value.
    pub cookie: Option<&'a str>,
}

/// Where the preferred zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    /// A peer proxy's forward header.
    Forwarded,
    /// The uid shard map.
    Uid,
    /// The zone cookie.
    Cookie,
    /// A weighted random draw.
    Random,
}

impl ZoneSource {
    /// All sources, in order.
    pub const ALL: [ZoneSource; 4] = [Self::Forwarded, Self::Uid, Self::Cookie, Self::Random];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Uid => "uid",
            Self::Cookie => "cookie",
            Self::Random => "random",
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneDecision {
    /// The zone the request belongs to (the cookie's value).
    pub preferred: ZoneId,
    /// Where `preferred` came from.
    pub source: ZoneSource,
    /// The zone that serves it: `preferred` or a failover target; `None` when no zone
    /// it may go to is available.
    pub served: Option<ZoneId>,
    /// How far the failover went.
    pub step: FailoverStep,
}

/// Decides the zone of a request. `available(zone)` says whether a zone can take
/// traffic now; `random` is a uniformly random number for the weighted draw.
///
/// A forwarded request is served only by local zones (never forwarded again). Otherwise
/// the uid mapping wins over the cookie unless `cookie_over_uid`.
pub fn decide(
    topo: &Topology,
    inputs: &ZoneInputs<'_>,
    cookie_over_uid: bool,
    random: u64,
    available: impl Fn(ZoneId) -> bool,
) -> ZoneDecision {
    let forwarded = inputs.forwarded.and_then(|z| topo.zone_id(z));
    let (preferred, source) = if let Some(z) = forwarded {
        (z, ZoneSource::Forwarded)
    } else {
        let by_uid = inputs.uid.and_then(|u| topo.zone_for_uid(u));
        let by_cookie = inputs.cookie.and_then(|c| topo.zone_id(c));
        let first = if cookie_over_uid {
            by_cookie
                .map(|z| (z, ZoneSource::Cookie))
                .or(by_uid.map(|z| (z, ZoneSource::Uid)))
        } else {
            by_uid
                .map(|z| (z, ZoneSource::Uid))
                .or(by_cookie.map(|z| (z, ZoneSource::Cookie)))
        };
        first.unwrap_or_else(|| (topo.weighted_zone(random), ZoneSource::Random))
    };
    let (served, step) = fail_over(topo, preferred, source, available);
    ZoneDecision {
        preferred,
        source,
        served,
        step,
    }
}

/// The zone that serves a request whose zone is `preferred` (from `source`): the
/// preferred zone when it is available, else the first available zone of its failover
/// chain; `None` when none is. A forwarded request is served only by local zones.
///
/// The step is counted by what happened, from the zone that serves the request (see
/// [`Topology::step`]): for a forwarded request, which already crossed data centres at
/// the peer proxy, a move here is at most [`FailoverStep::SameDataCentre`].
pub fn fail_over(
    topo: &Topology,
    preferred: ZoneId,
    source: ZoneSource,
    available: impl Fn(ZoneId) -> bool,
) -> (Option<ZoneId>, FailoverStep) {
    let local_only = source == ZoneSource::Forwarded;
    let allowed = |z: ZoneId| !local_only || topo.zones()[z].local;
    let served = std::iter::once(preferred)
        .chain(topo.failover_order(preferred).iter().map(|&(z, _)| z))
        .find(|&z| allowed(z) && available(z));
    let step = served.map_or(FailoverStep::None, |s| {
        if local_only {
            if s == preferred {
                FailoverStep::None
            } else {
                FailoverStep::SameDataCentre
            }
        } else {
            topo.step(preferred, s)
        }
    });
    (served, step)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The raw value of query parameter `name` (not percent-decoded).
pub fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}
