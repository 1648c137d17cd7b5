//! The serde config of the `zone_routing` filter.

use std::{collections::BTreeMap, num::NonZeroU32};

use proxy_core::matcher::Header;
use serde::{Deserialize, Serialize};

/// `http_filters[].config` of `typed: zone_routing`.
///
/// ```yaml
/// local_data_centre: dc1
/// local_cluster: app
/// zones:
///   - {name: z1, data_centre: dc1, city: hangzhou, weight: 2}
///   - {name: z2, data_centre: dc1, city: hangzhou}
///   - {name: z3, data_centre: dc2, city: hangzhou}
///   - {name: z4, data_centre: dc3, city: shanghai}
/// remote_clusters: {dc2: dc2_proxies, dc3: dc3_proxies}
/// uid:
///   source: {header: x-uid}     # or {cookie: uid}, {query: uid}
///   modulus: 100
///   ranges:
///     - {from: 0, to: 50, zone: z1}
///     - {from: 50, to: 100, zone: z3}
/// cookie: zone
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneRoutingConfig {
    /// The data centre this proxy runs in.
    pub local_data_centre: String,
    /// The cluster whose endpoints (labelled `metadata.zone`) serve the local zones;
    /// its health decides whether a local zone can take traffic.
    pub local_cluster: String,
    /// Every zone, in failover preference order within its data centre.
    pub zones: Vec<ZoneConfig>,
    /// Per remote data centre, the cluster of that data centre's proxies.
    #[serde(default)]
    pub remote_clusters: BTreeMap<String, String>,
    /// The uid mapping: where the user id comes from and which zone its shard lives
    /// in; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<UidConfig>,
    /// The zone cookie's name.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// The header that carries the chosen zone to a remote data centre's proxy; a
    /// request that carries it is served in the receiving data centre, never forwarded
    /// again, and gets no zone cookie.
    #[serde(default = "default_forward_header")]
    pub forward_header: Header,
    /// When true, a zone cookie wins over the uid mapping. Default false: the uid
    /// (where the user's data lives) decides, the cookie serves requests without uid.
    #[serde(default)]
    pub cookie_over_uid: bool,
}

impl ZoneRoutingConfig {
    /// A config for a proxy in `local_data_centre` serving the local zones from
    /// `local_cluster`: no remote data centre, no uid mapping, the default cookie and
    /// forward header.
    pub fn new(
        local_data_centre: impl Into<String>,
        local_cluster: impl Into<String>,
        zones: Vec<ZoneConfig>,
    ) -> Self {
        Self {
            local_data_centre: local_data_centre.into(),
            local_cluster: local_cluster.into(),
            zones,
            remote_clusters: BTreeMap::new(),
            uid: None,
            cookie: default_cookie(),
            forward_header: default_forward_header(),
            cookie_over_uid: false,
        }
    }
}

fn default_cookie() -> String {
    "zone".into()
}

fn default_forward_header() -> Header {
    Header(http::HeaderName::from_static("x-proxy-zone"))
}

/// One zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone name, matched against endpoint `metadata.zone`.
    pub name: String,
    /// The data centre the zone lives in.
    pub data_centre: String,
    /// The city the data centre is in.
    pub city: String,
    /// Relative weight for the random choice of a first request's zone.
    #[serde(default = "default_weight")]
    pub weight: NonZeroU32,
}

impl ZoneConfig {
    /// Zone `name` of `data_centre` in `city`, weight 1.
    pub fn new(
        name: impl Into<String>,
        data_centre: impl Into<String>,
        city: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            data_centre: data_centre.into(),
            city: city.into(),
            weight: default_weight(),
        }
    }
}

fn default_weight() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// Where a request's user id is read from: a one-key map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UidSource {
    /// A request header: `{header: x-uid}`.
    Header(Header),
    /// A cookie: `{cookie: uid}`.
    Cookie(String),
    /// A query parameter: `{query: uid}`.
    Query(String),
}

/// The uid mapping: `shard = uid mod modulus` (numeric uids; others are hashed
/// first), and half-open ranges `[from, to)` of shards mapped to zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UidConfig {
    /// Where the user id comes from.
    pub source: UidSource,
    /// The number of shards.
    #[serde(default = "default_modulus")]
    pub modulus: NonZeroU32,
    /// Shard ranges; shards in no range fall back to the cookie or a random zone.
    pub ranges: Vec<ShardRange>,
}

fn default_modulus() -> NonZeroU32 {
    NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN)
}

/// Shards `[from, to)` live in `zone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRange {
    /// First shard of the range.
    pub from: u32,
    /// One past the last shard.
    pub to: u32,
    /// The zone that serves these shards.
    pub zone: String,
}
