//! The validated zone topology: zones grouped into data centres grouped into cities,
//! the uid shard map, and each zone's failover order. Pure: no I/O, no runtime.

use std::{collections::HashMap, sync::Arc};

use super::config::{UidConfig, UidSource, ZoneRoutingConfig};
use crate::ConfigError;

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, reason)
}

/// Index of a zone in [`Topology::zones`].
pub type ZoneId = usize;

/// How far a failover went from the preferred zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverStep {
    /// The preferred zone itself: no failover.
    None,
    /// Another zone in the same data centre.
    SameDataCentre,
    /// A zone in another data centre of the same city.
    SameCity,
    /// A zone in another city.
    OtherCity,
}

impl FailoverStep {
    /// All steps, in order.
    pub const ALL: [FailoverStep; 4] = [
        Self::None,
        Self::SameDataCentre,
        Self::SameCity,
        Self::OtherCity,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SameDataCentre => "same_data_centre",
            Self::SameCity => "same_city",
            Self::OtherCity => "other_city",
        }
    }
}

/// One zone of the topology.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone name.
    pub name: Arc<str>,
    /// Its data centre.
    pub data_centre: Arc<str>,
    /// Its city.
    pub city: Arc<str>,
    /// Weight for the random first choice.
    pub weight: u32,
    /// Whether the zone is in this proxy's data centre.
    pub local: bool,
    /// For a remote zone, the cluster of its data centre's proxies.
    pub remote_cluster: Option<Arc<str>>,
}

/// Zones, data centres, cities, the shard map and the failover orders.
#[derive(Debug, Clone)]
pub struct Topology {
    zones: Vec<Zone>,
    by_name: HashMap<Arc<str>, ZoneId>,
    /// Cumulative weights for the random choice.
    cumulative: Vec<u64>,
    /// Per zone: the other zones to try, in order, with the step each one is.
    failover: Vec<Vec<(ZoneId, FailoverStep)>>,
    shards: Option<ShardMap>,
}

/// `uid mod modulus` -> zone.
#[derive(Debug, Clone)]
struct ShardMap {
    modulus: u32,
    /// Sorted, disjoint `[from, to)` ranges.
    ranges: Vec<(u32, u32, ZoneId)>,
}

impl Topology {
    /// Validates the config's zones, data centres and shards.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field: an empty zone list, a duplicate
    /// zone, a data centre in two cities, an unknown zone in the shard ranges,
    /// overlapping or out-of-range shards, an empty uid cookie or parameter name, a
    /// remote data centre without a proxy cluster, or a `remote_clusters` entry for an
    /// unknown or the local data centre.
    pub fn new(cfg: &ZoneRoutingConfig) -> Result<Self, ConfigError> {
        if cfg.zones.is_empty() {
            return Err(invalid("zones", "at least one zone is required"));
        }
        if !cfg
            .zones
            .iter()
            .any(|z| z.data_centre == cfg.local_data_centre)
        {
            return Err(invalid(
                "local_data_centre",
                format!("no zone is in data centre {}", cfg.local_data_centre),
            ));
        }
        let mut zones = Vec::with_capacity(cfg.zones.len());
        let mut by_name = HashMap::new();
        let mut dc_city: HashMap<&str, &str> = HashMap::new();
        for (i, z) in cfg.zones.iter().enumerate() {
            if z.name.is_empty() {
                return Err(invalid(format!("zones[{i}].name"), "must not be empty"));
            }
            if z.data_centre.is_empty() {
                return Err(invalid(
                    format!("zones[{i}].data_centre"),
                    "must not be empty",
                ));
            }
            if z.city.is_empty() {
                return Err(invalid(format!("zones[{i}].city"), "must not be empty"));
            }
            if !z.name.bytes().all(is_cookie_value_byte) {
                return Err(invalid(
                    format!("zones[{i}].name"),
                    format!("{:?} is not usable as a cookie value", z.name),
                ));
            }
            if let Some(city) = dc_city.insert(&z.data_centre, &z.city) {
                if city != z.city {
                    return Err(invalid(
                        format!("zones[{i}].city"),
                        format!(
                            "data centre {} is already in city {city}, not {}",
                            z.data_centre, z.city
                        ),
                    ));
                }
            }
            let local = z.data_centre == cfg.local_data_centre;
            let remote_cluster = if local {
                None
            } else {
                match cfg.remote_clusters.get(&z.data_centre) {
                    Some(c) => Some(Arc::<str>::from(c.as_str())),
                    None => {
                        return Err(invalid(
                            format!("remote_clusters.{}", z.data_centre),
                            format!(
                                "zone {} is in remote data centre {} which has no proxy cluster",
                                z.name, z.data_centre
                            ),
                        ))
                    }
                }
            };
            let name: Arc<str> = z.name.as_str().into();
            if by_name.insert(name.clone(), i).is_some() {
                return Err(invalid(
                    format!("zones[{i}].name"),
                    format!("duplicate zone {}", z.name),
                ));
            }
            zones.push(Zone {
                name,
                data_centre: z.data_centre.as_str().into(),
                city: z.city.as_str().into(),
                weight: z.weight.get(),
                local,
                remote_cluster,
            });
        }
        for dc in cfg.remote_clusters.keys() {
            if dc == &cfg.local_data_centre {
                return Err(invalid(
                    format!("remote_clusters.{dc}"),
                    "the local data centre is served by local_cluster",
                ));
            }
            if !dc_city.contains_key(dc.as_str()) {
                return Err(invalid(
                    format!("remote_clusters.{dc}"),
                    format!("unknown data centre {dc} (no zone lives there)"),
                ));
            }
        }
        let shards = cfg
            .uid
            .as_ref()
            .map(|u| ShardMap::new(u, &by_name))
            .transpose()
            .map_err(|e| e.within("uid"))?;
        let mut total = 0u64;
        let cumulative = zones
            .iter()
            .map(|z| {
                total += u64::from(z.weight);
                total
            })
            .collect();
        let failover = (0..zones.len())
            .map(|i| failover_order(&zones, i))
            .collect();
        Ok(Self {
            zones,
            by_name,
            cumulative,
            failover,
            shards,
        })
    }

    /// The zones, in config order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone named `name`.
    pub fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.by_name.get(name).copied()
    }

    /// The zone a uid maps to, if the shard map covers it.
    pub fn zone_for_uid(&self, uid: &str) -> Option<ZoneId> {
        self.shards.as_ref()?.lookup(uid)
    }

    /// A zone drawn by weight; `r` is a uniformly random `u64`.
    pub fn weighted_zone(&self, r: u64) -> ZoneId {
        let total = self.cumulative.last().copied().unwrap_or(1).max(1);
        let x = r % total;
        self.cumulative.partition_point(|&c| c <= x)
    }

    /// How far `to` is from `from`: the same zone, another zone of its data centre,
    /// another data centre of its city, or another city.
    pub fn step(&self, from: ZoneId, to: ZoneId) -> FailoverStep {
        let (a, b) = (&self.zones[from], &self.zones[to]);
        if from == to {
            FailoverStep::None
        } else if a.data_centre == b.data_centre {
            FailoverStep::SameDataCentre
        } else if a.city == b.city {
            FailoverStep::SameCity
        } else {
            FailoverStep::OtherCity
        }
    }

    /// The zones to try after `zone`, in order, with the failover step of each: the
    /// other zones of its data centre, then the other data centres of its city, then
    /// the other cities (config order within each group).
    pub fn failover_order(&self, zone: ZoneId) -> &[(ZoneId, FailoverStep)] {
        self.failover.get(zone).map_or(&[], Vec::as_slice)
    }
}

fn failover_order(zones: &[Zone], from: ZoneId) -> Vec<(ZoneId, FailoverStep)> {
    let me = &zones[from];
    let mut order: Vec<(ZoneId, FailoverStep)> = Vec::with_capacity(zones.len());
    let others = || (0..zones.len()).filter(move |&i| i != from);
    order.extend(
        others()
            .filter(|&i| zones[i].data_centre == me.data_centre)
            .map(|i| (i, FailoverStep::SameDataCentre)),
    );
    // Other data centres of the city, grouped by data centre in order of first appearance.
    let mut dcs: Vec<&Arc<str>> = Vec::new();
    for i in others() {
        let z = &zones[i];
        if z.city == me.city && z.data_centre != me.data_centre && !dcs.contains(&&z.data_centre) {
            dcs.push(&z.data_centre);
        }
    }
    for dc in dcs {
        order.extend(
            others()
                .filter(|&i| &zones[i].data_centre == dc)
                .map(|i| (i, FailoverStep::SameCity)),
        );
    }
    let mut cities: Vec<&Arc<str>> = Vec::new();
    for i in others() {
        let z = &zones[i];
        if z.city != me.city && !cities.contains(&&z.city) {
            cities.push(&z.city);
        }
    }
    for city in cities {
        order.extend(
            others()
                .filter(|&i| &zones[i].city == city)
                .map(|i| (i, FailoverStep::OtherCity)),
        );
    }
    order
}

/// Cookie value bytes (RFC 6265 `cookie-octet`).
fn is_cookie_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

impl ShardMap {
    /// The map of `cfg`; errors name fields relative to `uid`.
    fn new(cfg: &UidConfig, zones: &HashMap<Arc<str>, ZoneId>) -> Result<Self, ConfigError> {
        match &cfg.source {
            UidSource::Cookie(n) if n.is_empty() => {
                return Err(invalid("source.cookie", "must not be empty"))
            }
            UidSource::Query(n) if n.is_empty() => {
                return Err(invalid("source.query", "must not be empty"))
            }
            _ => {}
        }
        let modulus = cfg.modulus.get();
        if cfg.ranges.is_empty() {
            return Err(invalid("ranges", "at least one range is required"));
        }
        let mut ranges = Vec::with_capacity(cfg.ranges.len());
        for (i, r) in cfg.ranges.iter().enumerate() {
            let Some(&zone) = zones.get(r.zone.as_str()) else {
                return Err(invalid(
                    format!("ranges[{i}].zone"),
                    format!("unknown zone {}", r.zone),
                ));
            };
            if r.from >= r.to {
                return Err(invalid(
                    format!("ranges[{i}]"),
                    format!("from {} must be below to {}", r.from, r.to),
                ));
            }
            if r.to > modulus {
                return Err(invalid(
                    format!("ranges[{i}].to"),
                    format!("{} is beyond the modulus {modulus}", r.to),
                ));
            }
            ranges.push((r.from, r.to, zone, i));
        }
        ranges.sort_unstable_by_key(|r| r.0);
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(invalid(
                    format!("ranges[{}]", w[1].3),
                    format!("overlaps uid.ranges[{}]", w[0].3),
                ));
            }
        }
        Ok(Self {
            modulus,
            ranges: ranges.into_iter().map(|(f, t, z, _)| (f, t, z)).collect(),
        })
    }

    fn lookup(&self, uid: &str) -> Option<ZoneId> {
        let shard = uid_shard(uid, self.modulus)?;
        let i = self.ranges.partition_point(|r| r.1 <= shard);
        let (from, to, zone) = *self.ranges.get(i)?;
        (from <= shard && shard < to).then_some(zone)
    }
}

/// The shard of a uid: a decimal uid (any length) modulo `modulus`; any other uid is
/// hashed (FNV-1a, stable across releases) first. `None` for an empty uid.
pub fn uid_shard(uid: &str, modulus: u32) -> Option<u32> {
    if uid.is_empty() || modulus == 0 {
        return None;
    }
    let m = u64::from(modulus);
    if uid.bytes().all(|b| b.is_ascii_digit()) {
        let rem = uid
            .bytes()
            .fold(0u64, |acc, b| (acc * 10 + u64::from(b - b'0')) % m);
        return u32::try_from(rem).ok();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(h % m).ok()
}
