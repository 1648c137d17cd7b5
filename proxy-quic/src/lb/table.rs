//! The routing table: server IDs to server addresses, the connection ID decoder and
//! a Maglev table over the servers for packets that do not route by connection ID.
//! Pure and synchronous; the forwarder holds one immutable `Routes` and swaps in the
//! next whole.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use proxy_core::ConfigError;
use proxy_lb::maglev::MaglevTable;
use xxhash_rust::xxh64::xxh64;

use super::packet::{Header, LongType};
use crate::{ConfigId, Decoded, Decoder, ServerId, Unroutable};

/// Slots of the Maglev table (a prime): a server's share moves in steps of 1/65537,
/// and the table is even enough for a few hundred servers.
pub const MAGLEV_TABLE_SIZE: u32 = 65_537;

/// The seed of the 4-tuple hash. Fixed, so that every load balancer instance (and
/// every release) sends a 4-tuple to the same server.
const TUPLE_SEED: u64 = 0x7175_6963_6c62_3475; // "quiclb4u"

/// How a packet was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteBy {
    /// By the server ID in its destination connection ID.
    Cid,
    /// By the 4-tuple hash: the connection ID is unroutable.
    Hash(Unroutable),
    /// By the 4-tuple hash: the connection ID names a server ID with no address.
    UnknownServer,
    /// By the 4-tuple hash: a version whose connection IDs are not QUIC-LB's.
    UnknownVersion,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The server's address.
    pub server: SocketAddr,
    /// The server's ID.
    pub server_id: ServerId,
    /// Why this server.
    pub by: RouteBy,
}

#[derive(Debug, Clone)]
struct Server {
    id: ServerId,
    address: SocketAddr,
}

/// The load balancer's routing state: the [`Decoder`], each server's ID and address,
/// and a Maglev table (proxy-lb's [`MaglevTable`], keyed by server ID) for the
/// 4-tuple hash. Immutable: build the next one and swap it in whole.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, ConfigId, Decoder, Nonce, ServerId};
/// use proxy_quic::lb::{parse, RouteBy, Routes};
///
/// let format = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap();
/// let mut decoder = Decoder::new();
/// decoder.insert(format.clone());
/// let a = ServerId::from_hex("0a0a").unwrap();
/// let b = ServerId::from_hex("0b0b").unwrap();
/// let routes = Routes::new(decoder, [
///     (a, "10.0.0.1:4433".parse().unwrap()),
///     (b, "10.0.0.2:4433".parse().unwrap()),
/// ]).unwrap();
///
/// // A short-header packet whose connection ID carries server b's ID.
/// let cid = format.encode(&b, &Nonce::new(&[7; 6]).unwrap(), 0).unwrap();
/// let mut packet = vec![0x40];
/// packet.extend_from_slice(cid.as_bytes());
/// packet.resize(40, 0);
/// let client = "192.0.2.1:5000".parse().unwrap();
/// let local = "203.0.113.1:443".parse().unwrap();
/// let route = routes.route(&parse(&packet).unwrap(), client, local).unwrap();
/// assert_eq!((route.server_id, route.by), (b, RouteBy::Cid));
/// ```
#[derive(Debug, Clone)]
pub struct Routes {
    decoder: Decoder,
    servers: Box<[Server]>,
    by_id: HashMap<ServerId, usize>,
    addresses: HashSet<SocketAddr>,
    table: MaglevTable,
}

impl Routes {
    /// Routes over `servers` (server ID, address).
    ///
    /// # Errors
    /// A [`ConfigError`] at `servers[i].server_id` for a server ID used twice or
    /// whose length no config of `decoder` has (it could never route by connection
    /// ID), or at `servers` when there is none.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
    /// let mut decoder = Decoder::new();
    /// decoder.insert(CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap());
    /// let addr = "10.0.0.1:4433".parse().unwrap();
    /// let err = proxy_quic::lb::Routes::new(decoder, [(ServerId::from_hex("0a").unwrap(), addr)])
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(),
    ///     "servers[0].server_id: a server ID of 1 octets, and no config has server IDs of that length");
    /// ```
    pub fn new(
        decoder: Decoder,
        servers: impl IntoIterator<Item = (ServerId, SocketAddr)>,
    ) -> Result<Self, ConfigError> {
        let servers: Box<[Server]> = servers
            .into_iter()
            .map(|(id, address)| Server { id, address })
            .collect();
        if servers.is_empty() {
            return Err(ConfigError::new("servers", "at least one server is needed"));
        }
        let mut by_id = HashMap::with_capacity(servers.len());
        for (i, s) in servers.iter().enumerate() {
            let at = format!("servers[{i}].server_id");
            if !decoder.formats().any(|f| f.server_id_len() == s.id.len()) {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "a server ID of {} octets, and no config has server IDs of that length",
                        s.id.len()
                    ),
                ));
            }
            if let Some(j) = by_id.insert(s.id, i) {
                return Err(ConfigError::new(
                    at,
                    format!("server ID {} is already used by servers[{j}]", s.id),
                ));
            }
        }
        let keys: Vec<(&[u8], u32)> = servers.iter().map(|s| (s.id.as_bytes(), 1)).collect();
        let table = MaglevTable::build(&keys, MAGLEV_TABLE_SIZE);
        let addresses = servers.iter().map(|s| canonical(s.address)).collect();
        Ok(Self {
            decoder,
            servers,
            by_id,
            addresses,
            table,
        })
    }

    /// The decoder.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
    /// # let mut d = Decoder::new();
    /// # d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap());
    /// # let routes = proxy_quic::lb::Routes::new(d, [(ServerId::from_hex("01").unwrap(), "10.0.0.1:1".parse().unwrap())]).unwrap();
    /// assert_eq!(routes.decoder().formats().count(), 1);
    /// ```
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The servers, (ID, address), in the order given.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
    /// # let mut d = Decoder::new();
    /// # d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap());
    /// # let routes = proxy_quic::lb::Routes::new(d, [(ServerId::from_hex("01").unwrap(), "10.0.0.1:1".parse().unwrap())]).unwrap();
    /// assert_eq!(routes.servers().count(), 1);
    /// ```
    pub fn servers(&self) -> impl Iterator<Item = (ServerId, SocketAddr)> + '_ {
        self.servers.iter().map(|s| (s.id, s.address))
    }

    /// Whether `from` is one of the servers' addresses (replies from anywhere else
    /// are not forwarded to clients).
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
    /// # let mut d = Decoder::new();
    /// # d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap());
    /// # let routes = proxy_quic::lb::Routes::new(d, [(ServerId::from_hex("01").unwrap(), "10.0.0.1:1".parse().unwrap())]).unwrap();
    /// assert!(routes.is_server("10.0.0.1:1".parse().unwrap()));
    /// assert!(!routes.is_server("10.0.0.1:2".parse().unwrap()));
    /// ```
    pub fn is_server(&self, from: SocketAddr) -> bool {
        self.addresses.contains(&canonical(from))
    }

    /// Routes a client's packet: by the server ID in its destination connection ID
    /// when that decodes to a server with an address, else by the consistent hash of
    /// the 4-tuple (`client`, `local`). Allocation-free.
    ///
    /// `None` only if there is no server, which [`Routes::new`] refuses.
    pub fn route(
        &self,
        header: &Header<'_>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Option<Route> {
        let by = match header {
            Header::Long {
                kind: LongType::UnknownVersion,
                ..
            } => RouteBy::UnknownVersion,
            _ => match self.decoder.decode(header.dcid()) {
                Decoded::Routable { config_id, .. } if !self.whole_cid(header, config_id) => {
                    RouteBy::Hash(Unroutable::LengthMismatch)
                }
                Decoded::Routable { server_id, .. } => match self.by_id.get(&server_id) {
                    Some(&i) => return self.route_to(i, RouteBy::Cid),
                    None => RouteBy::UnknownServer,
                },
                Decoded::Unroutable(reason) => RouteBy::Hash(reason),
            },
        };
        let i = self.table.lookup(tuple_hash(client, local))?;
        self.route_to(i, by)
    }

    /// The server the 4-tuple hash picks for (`client`, `local`): where a new
    /// connection from `client` starts.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Decoder, ServerId};
    /// # let mut d = Decoder::new();
    /// # d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap());
    /// # let routes = proxy_quic::lb::Routes::new(d, [(ServerId::from_hex("01").unwrap(), "10.0.0.1:1".parse().unwrap())]).unwrap();
    /// let (client, local) = ("192.0.2.1:5000".parse().unwrap(), "203.0.113.1:443".parse().unwrap());
    /// assert_eq!(routes.hash_route(client, local), ServerId::from_hex("01").ok());
    /// ```
    pub fn hash_route(&self, client: SocketAddr, local: SocketAddr) -> Option<ServerId> {
        let i = self.table.lookup(tuple_hash(client, local))?;
        self.servers.get(i).map(|s| s.id)
    }

    /// Whether a long header's connection ID is exactly as long as its config's
    /// (a long header states the length; one of another length was not issued under
    /// the config). A short header's is read at the config's length.
    fn whole_cid(&self, header: &Header<'_>, config_id: ConfigId) -> bool {
        match header {
            Header::Long { dcid, .. } => {
                self.decoder.format(config_id).map(|f| f.cid_len()) == Some(dcid.len())
            }
            Header::Short { .. } => true,
        }
    }

    fn route_to(&self, i: usize, by: RouteBy) -> Option<Route> {
        self.servers.get(i).map(|s| Route {
            server: s.address,
            server_id: s.id,
            by,
        })
    }
}

/// The 4-tuple hash: xxh64 over both addresses (IPv4 as IPv4-mapped IPv6) and
/// ports, with a fixed seed. No allocation.
fn tuple_hash(client: SocketAddr, local: SocketAddr) -> u64 {
    let mut key = [0u8; 36];
    let (c, l) = (canonical(client), canonical(local));
    key[..16].copy_from_slice(&v6_octets(c.ip()));
    key[16..18].copy_from_slice(&c.port().to_be_bytes());
    key[18..34].copy_from_slice(&v6_octets(l.ip()));
    key[34..].copy_from_slice(&l.port().to_be_bytes());
    xxh64(&key, TUPLE_SEED)
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// An IPv4-mapped IPv6 address as IPv4, as a dual-stack socket reports it.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CidFormat, ConfigId};

    fn decoder() -> Decoder {
        let mut d = Decoder::new();
        d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap());
        d
    }

    fn sid(n: u16) -> ServerId {
        ServerId::new(&n.to_be_bytes()).unwrap()
    }

    fn routes(n: u16) -> Routes {
        let servers = (1..=n).map(|i| (sid(i), SocketAddr::from(([10, 0, 0, i as u8], 443))));
        Routes::new(decoder(), servers).unwrap()
    }

    #[test]
    fn duplicate_and_missing_servers_are_refused() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let e = Routes::new(decoder(), [(sid(1), addr), (sid(1), addr)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "servers[1].server_id: server ID 0001 is already used by servers[0]"
        );
        let e = Routes::new(decoder(), []).unwrap_err();
        assert_eq!(e.to_string(), "servers: at least one server is needed");
    }

    #[test]
    fn adding_a_server_moves_only_its_share() {
        let (two, three) = (routes(2), routes(3));
        let local: SocketAddr = "203.0.113.1:443".parse().unwrap();
        let (mut to_new, mut elsewhere) = (0, 0);
        let n = 20_000u32;
        for k in 0..n {
            let client = SocketAddr::from((k.to_be_bytes(), (k % 50_000) as u16 + 1024));
            let before = two.hash_route(client, local).unwrap();
            let after = three.hash_route(client, local).unwrap();
            if before != after {
                if after == sid(3) {
                    to_new += 1;
                } else {
                    elsewhere += 1;
                }
            }
        }
        // The new server takes about a third; Maglev moves almost nothing else.
        let share = f64::from(to_new) / f64::from(n);
        assert!((0.30..0.37).contains(&share), "new server took {share}");
        assert!(
            elsewhere * 100 < n,
            "{elsewhere} keys moved between old servers"
        );
    }

    #[test]
    fn a_long_header_cid_of_another_length_goes_by_hash() {
        let r = routes(2);
        let format = r.decoder().formats().next().unwrap().clone();
        let cid = format
            .encode(&sid(2), &crate::Nonce::new(&[3; 6]).unwrap(), 0)
            .unwrap();
        let (client, local) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        let mut dcid = cid.as_bytes().to_vec();
        let exact = Header::Long {
            kind: LongType::Handshake,
            version: 1,
            dcid: &dcid,
            scid: &[],
        };
        assert_eq!(r.route(&exact, client, local).unwrap().by, RouteBy::Cid);
        dcid.push(0);
        let longer = Header::Long {
            kind: LongType::Initial,
            version: 1,
            dcid: &dcid,
            scid: &[],
        };
        assert_eq!(
            r.route(&longer, client, local).unwrap().by,
            RouteBy::Hash(Unroutable::LengthMismatch)
        );
        // A short header's connection ID is read at the config's length.
        let short = Header::Short {
            dcid_and_rest: &dcid,
        };
        assert_eq!(r.route(&short, client, local).unwrap().by, RouteBy::Cid);
    }

    #[test]
    fn both_configs_of_a_rotation_route() {
        let key = crate::CidKey::new([9; 16]);
        let old = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, Some(&key), false).unwrap();
        let new = CidFormat::new(ConfigId::new(1).unwrap(), 2, 10, Some(&key), true).unwrap();
        let mut decoder = Decoder::new();
        decoder.insert(old.clone());
        decoder.insert(new.clone());
        let servers = [1, 2].map(|i| (sid(i), SocketAddr::from(([10, 0, 0, i as u8], 443))));
        let during = Routes::new(decoder.clone(), servers).unwrap();
        let nonce = |n: usize| crate::Nonce::new(&[5; 10][..n]).unwrap();
        let cid_old = old.encode(&sid(1), &nonce(6), 0).unwrap();
        let cid_new = new.encode(&sid(2), &nonce(10), 0).unwrap();
        let (client, local) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        let short = |cid: &crate::Cid| {
            let mut p = vec![0x40];
            p.extend_from_slice(cid.as_bytes());
            p.resize(40, 0);
            p
        };
        let route = |routes: &Routes, packet: &[u8]| {
            let header = super::super::packet::parse(packet).unwrap();
            let route = routes.route(&header, client, local).unwrap();
            (route.server_id, route.by)
        };
        let (p_old, p_new) = (short(&cid_old), short(&cid_new));
        assert_eq!(route(&during, &p_old), (sid(1), RouteBy::Cid));
        assert_eq!(route(&during, &p_new), (sid(2), RouteBy::Cid));

        // The rotation is over: config 0 retired, its IDs go by hash.
        decoder.remove(ConfigId::new(0).unwrap());
        let after = Routes::new(decoder, servers).unwrap();
        assert_eq!(route(&after, &p_new), (sid(2), RouteBy::Cid));
        assert_eq!(
            route(&after, &p_old).1,
            RouteBy::Hash(Unroutable::UnknownConfig)
        );
    }

    #[test]
    fn ipv4_and_mapped_ipv6_are_one_tuple() {
        let r = routes(5);
        let local: SocketAddr = "203.0.113.1:443".parse().unwrap();
        let v4: SocketAddr = "192.0.2.7:999".parse().unwrap();
        let v6: SocketAddr = "[::ffff:192.0.2.7]:999".parse().unwrap();
        assert_eq!(r.hash_route(v4, local), r.hash_route(v6, local));
        assert!(r.is_server("[::ffff:10.0.0.3]:443".parse().unwrap()));
    }
}
