//! The server's side: generators of QUIC-LB connection IDs, one per nonce space, and
//! their quinn `ConnectionIdGenerator` implementation.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aes::Aes128;
use proxy_core::ConfigError;
use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid, RandomConnectionIdGenerator};
use rand_core::{OsRng, RngCore};

use crate::cipher::{aes128, encrypt_block, mask, Whitener, BLOCK};
use crate::config::{format_error, QuicLbConfig};
use crate::types::{Cid, ConfigId, Nonce, ServerId, MAX_CID_LEN};
use crate::{CidError, CidFormat, NonceSpace};

/// The fewest nonce bits that must stay a counter after the nonce space prefix:
/// 2^24 (about 16.7 million) connection IDs per generator before it runs out.
pub const MIN_COUNTER_BITS: u32 = 24;

/// A server's validated QUIC-LB config: its connection ID format and server ID.
/// Hands out one [`CidGenerator`] per nonce space.
///
/// # Example
/// ```
/// use proxy_quic::{NonceSpace, QuicLbConfig, QuicLbServer};
/// let config: QuicLbConfig = serde_json::from_str(r#"{
///     "config_id": 0, "server_id": "0a0b", "nonce_length": 6,
///     "cid_key": "8f95f09245765f80256934e50c66207f"}"#).unwrap();
/// let server = QuicLbServer::try_from(&config).unwrap();
/// let mut worker0 = server.generator(NonceSpace::new(0, 2).unwrap()).unwrap();
/// let mut worker1 = server.generator(NonceSpace::new(1, 2).unwrap()).unwrap();
/// let (a, b) = (worker0.next_cid(), worker1.next_cid());
/// assert_ne!(a, b);
/// assert_eq!(server.format().server_id(a.as_bytes()), Some(server.server_id()));
/// ```
#[derive(Clone, Debug)]
pub struct QuicLbServer {
    format: CidFormat,
    server_id: ServerId,
}

impl QuicLbServer {
    /// A server with ID `server_id` issuing connection IDs of `format`.
    ///
    /// # Errors
    /// A server ID of another length than the format's.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, QuicLbServer, ServerId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 4, None, false).unwrap();
    /// assert!(QuicLbServer::new(f.clone(), ServerId::new(&[1, 2]).unwrap()).is_ok());
    /// assert!(QuicLbServer::new(f, ServerId::new(&[1]).unwrap()).is_err());
    /// ```
    pub fn new(format: CidFormat, server_id: ServerId) -> Result<Self, CidError> {
        if server_id.len() != format.server_id_len() {
            return Err(CidError::WrongLength {
                what: "a server ID",
                got: server_id.len(),
                want: format.server_id_len(),
            });
        }
        Ok(Self { format, server_id })
    }

    /// The connection ID format.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, QuicLbServer, ServerId};
    /// # let f = CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap();
    /// let s = QuicLbServer::new(f, ServerId::new(&[1]).unwrap()).unwrap();
    /// assert_eq!(s.format().cid_len(), 6);
    /// ```
    pub fn format(&self) -> &CidFormat {
        &self.format
    }

    /// This server's ID.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, QuicLbServer, ServerId};
    /// # let f = CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap();
    /// let s = QuicLbServer::new(f, ServerId::new(&[1]).unwrap()).unwrap();
    /// assert_eq!(s.server_id().as_bytes(), &[1]);
    /// ```
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// A generator drawing nonces from `space`. Two generators never issue the same
    /// connection ID as long as no two share a nonce space (of the same server ID and
    /// config): give each process and each worker its own part
    /// ([`NonceSpace::split`]), and never make two generators of one part.
    ///
    /// # Errors
    /// A space split so finely that fewer than [`MIN_COUNTER_BITS`] nonce bits remain,
    /// or no randomness from the operating system.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, NonceSpace, QuicLbServer, ServerId};
    /// # let f = CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap();
    /// let s = QuicLbServer::new(f, ServerId::new(&[1]).unwrap()).unwrap();
    /// assert!(s.generator(NonceSpace::new(0, 256).unwrap()).is_ok());
    /// // A 4-octet nonce split 512 ways leaves 23 counter bits.
    /// assert!(s.generator(NonceSpace::new(0, 512).unwrap()).is_err());
    /// ```
    pub fn generator(&self, space: NonceSpace) -> Result<CidGenerator, CidError> {
        let nonce_bits = 8 * self.format.nonce_len() as u32;
        let prefix_bits = space.prefix_bits();
        let free_bits = nonce_bits.saturating_sub(prefix_bits);
        if free_bits < MIN_COUNTER_BITS {
            return Err(CidError::NonceSpaceTooSmall {
                nonce_len: self.format.nonce_len(),
                count: space.count(),
                counter_bits: free_bits,
                min: MIN_COUNTER_BITS,
            });
        }
        let counter_bits = free_bits.min(128);
        let keys = random_block()?;
        let start = u128::from_be_bytes(random_block()?) & mask(counter_bits);
        let routable = Routable {
            server: self.clone(),
            prefix: u128::from(space.index()),
            prefix_bits,
            filler_bits: free_bits - counter_bits,
            counter_bits,
            whitener: Whitener::new(&keys, counter_bits),
            start,
            issued: 0,
            exhausted: false,
        };
        let mut generator = CidGenerator::unroutable(self.format.cid_len())?;
        generator.routable = Some(Box::new(routable));
        Ok(generator)
    }
}

impl TryFrom<&QuicLbConfig> for QuicLbServer {
    type Error = ConfigError;

    fn try_from(c: &QuicLbConfig) -> Result<Self, ConfigError> {
        let format = CidFormat::new(
            c.config_id,
            c.server_id.len(),
            usize::from(c.nonce_length),
            c.cid_key.as_ref(),
            c.first_octet_encodes_cid_length,
        )
        .map_err(|e| format_error(e, "server_id"))?;
        Self::new(format, c.server_id).map_err(|e| ConfigError::new("server_id", e))
    }
}

fn random_block() -> Result<[u8; BLOCK], CidError> {
    let mut block = [0u8; BLOCK];
    OsRng
        .try_fill_bytes(&mut block)
        .map_err(|_| CidError::Random)?;
    Ok(block)
}

/// Sets `width` bits of `buf` from bit `offset` on (most significant first) to the
/// low `width` bits of `value`.
fn put_bits(buf: &mut [u8], offset: u32, width: u32, value: u128) {
    for i in 0..width {
        let bit = ((value >> (width - 1 - i)) & 1) as u8;
        let at = offset + i;
        if let Some(byte) = buf.get_mut((at / 8) as usize) {
            *byte |= bit << (7 - at % 8);
        }
    }
}

/// The nonce state of a routable generator.
struct Routable {
    server: QuicLbServer,
    prefix: u128,
    prefix_bits: u32,
    filler_bits: u32,
    counter_bits: u32,
    whitener: Whitener,
    start: u128,
    issued: u128,
    exhausted: bool,
}

/// Issues QUIC-LB connection IDs: the config rotation bits, the server ID, and a
/// nonce unique to this generator. Implements quinn's
/// [`ConnectionIdGenerator`] so that a quinn endpoint issues them.
///
/// The nonce, most significant bit first: the nonce space's index (the fewest bits
/// that hold its count), random filler bits when the nonce has more than 128 bits
/// left, and a counter from a random start put through a keyed permutation, so that
/// consecutive nonces look unrelated and yet never repeat. After `2^counter_bits`
/// connection IDs the generator has used up its nonces and issues unroutable
/// connection IDs (codepoint 0b111, draft-21 section 9.6), which the load balancer
/// routes by 4-tuple.
///
/// # Example
/// ```
/// use proxy_quic::CidGenerator;
/// use quinn_proto::ConnectionIdGenerator;
/// let mut g = CidGenerator::unroutable(8).unwrap();
/// let cid = g.generate_cid();
/// assert_eq!(cid[0], 0b111_00111);
/// assert_eq!(g.cid_len(), 8);
/// ```
pub struct CidGenerator {
    routable: Option<Box<Routable>>,
    cid_len: usize,
    prg: Aes128,
    prg_counter: u128,
    lifetime: Option<Duration>,
}

impl CidGenerator {
    /// A generator of unroutable connection IDs of `cid_len` octets (2-20; 8 or more
    /// recommended), for a server without QUIC-LB config: codepoint 0b111, the
    /// length self-encoded, the rest random.
    ///
    /// # Errors
    /// A length outside 2-20, or no randomness from the operating system.
    ///
    /// # Example
    /// ```
    /// let mut g = proxy_quic::CidGenerator::unroutable(20).unwrap();
    /// assert_eq!(g.next_cid().as_bytes()[0], 0xf3);
    /// assert!(proxy_quic::CidGenerator::unroutable(21).is_err());
    /// ```
    pub fn unroutable(cid_len: usize) -> Result<Self, CidError> {
        if !(2..=MAX_CID_LEN).contains(&cid_len) {
            return Err(CidError::UnroutableLength(cid_len));
        }
        Ok(Self {
            routable: None,
            cid_len,
            prg: aes128(&random_block()?),
            prg_counter: 0,
            lifetime: None,
        })
    }

    /// Retire connection IDs after `lifetime` (quinn then issues new ones).
    ///
    /// # Example
    /// ```
    /// use quinn_proto::ConnectionIdGenerator;
    /// let g = proxy_quic::CidGenerator::unroutable(8).unwrap()
    ///     .with_lifetime(std::time::Duration::from_secs(600));
    /// assert_eq!(g.cid_lifetime(), Some(std::time::Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Whether this generator issues routable connection IDs (it has a config and
    /// nonces left).
    ///
    /// # Example
    /// ```
    /// assert!(!proxy_quic::CidGenerator::unroutable(8).unwrap().is_routable());
    /// ```
    pub fn is_routable(&self) -> bool {
        self.routable.as_ref().is_some_and(|r| !r.exhausted)
    }

    /// The length of the connection IDs it issues.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::CidGenerator::unroutable(9).unwrap().len(), 9);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.cid_len
    }

    /// Sixteen pseudo-random octets, a fresh block for each call.
    fn random(&mut self) -> [u8; BLOCK] {
        let block = encrypt_block(&self.prg, self.prg_counter.to_be_bytes());
        self.prg_counter = self.prg_counter.wrapping_add(1);
        block
    }

    /// The next connection ID.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, NonceSpace, QuicLbServer, ServerId};
    /// let f = CidFormat::new(ConfigId::new(3).unwrap(), 2, 5, None, true).unwrap();
    /// let s = QuicLbServer::new(f, ServerId::new(&[7, 7]).unwrap()).unwrap();
    /// let mut g = s.generator(NonceSpace::WHOLE).unwrap();
    /// let cid = g.next_cid();
    /// assert_eq!(cid.as_bytes()[..3], [0b011_00111, 7, 7]);
    /// ```
    pub fn next_cid(&mut self) -> Cid {
        let random = self.random();
        if let Some(r) = self.routable.as_deref_mut() {
            if let Some(cid) = r.next(&random) {
                return cid;
            }
        }
        let mut out = [0u8; MAX_CID_LEN];
        let more = self.random();
        out[0] = (ConfigId::UNROUTABLE_BITS << 5) | (self.cid_len - 1) as u8;
        for (i, b) in out[1..self.cid_len].iter_mut().enumerate() {
            *b = if i < BLOCK {
                random[i]
            } else {
                more[i - BLOCK]
            };
        }
        Cid::from_parts(out, self.cid_len)
    }

    /// Makes a quinn connection ID generator factory
    /// (`quinn::EndpointConfig::cid_generator`) that hands out this generator once:
    /// quinn calls the factory once per endpoint, and a second endpoint built from the
    /// same config would otherwise share the nonce space. Any further call gets an
    /// unroutable generator of the same length, and an error is logged.
    ///
    /// # Example
    /// ```
    /// let factory = proxy_quic::CidGenerator::unroutable(8).unwrap().into_quinn_factory();
    /// assert_eq!(factory().cid_len(), 8);
    /// assert_eq!(factory().cid_len(), 8);
    /// ```
    pub fn into_quinn_factory(
        self,
    ) -> impl Fn() -> Box<dyn ConnectionIdGenerator> + Send + Sync + 'static {
        let cid_len = self.cid_len;
        let lifetime = self.lifetime;
        let once = Mutex::new(Some(self));
        move || {
            let taken = once.lock().ok().and_then(|mut g| g.take());
            if let Some(g) = taken {
                return Box::new(g);
            }
            tracing::error!(
                "QUIC-LB connection ID generator factory called twice: \
                 the second endpoint issues unroutable connection IDs"
            );
            match CidGenerator::unroutable(cid_len) {
                Ok(mut g) => {
                    g.lifetime = lifetime;
                    Box::new(g)
                }
                Err(_) => Box::new(RandomConnectionIdGenerator::new(cid_len)),
            }
        }
    }
}

impl Routable {
    /// The next routable connection ID; `None` once the nonces are used up.
    fn next(&mut self, random: &[u8; BLOCK]) -> Option<Cid> {
        if self.exhausted {
            return None;
        }
        let value = self.start.wrapping_add(self.issued) & mask(self.counter_bits);
        if self.issued == mask(self.counter_bits) {
            self.exhausted = true;
            tracing::warn!(
                server_id = %self.server.server_id,
                "QUIC-LB nonce space used up: issuing unroutable connection IDs"
            );
        } else {
            self.issued += 1;
        }
        let format = &self.server.format;
        let mut nonce = [0u8; Nonce::MAX_LEN];
        put_bits(&mut nonce, 0, self.prefix_bits, self.prefix);
        let filler = u128::from(u16::from_be_bytes([random[1], random[2]]));
        put_bits(&mut nonce, self.prefix_bits, self.filler_bits, filler);
        put_bits(
            &mut nonce,
            self.prefix_bits + self.filler_bits,
            self.counter_bits,
            self.whitener.permute(value),
        );
        let nonce = Nonce::new(&nonce[..format.nonce_len()])?;
        format
            .encode(&self.server.server_id, &nonce, random[0])
            .ok()
    }
}

impl fmt::Debug for CidGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CidGenerator");
        d.field("cid_len", &self.cid_len);
        if let Some(r) = &self.routable {
            d.field("server_id", &r.server.server_id)
                .field("format", &r.server.format)
                .field("nonce_space_prefix", &r.prefix)
                .field("prefix_bits", &r.prefix_bits)
                .field("counter_bits", &r.counter_bits)
                .field("exhausted", &r.exhausted);
        }
        d.finish_non_exhaustive()
    }
}

impl ConnectionIdGenerator for CidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        ConnectionId::new(self.next_cid().as_bytes())
    }

    /// Accepts this server's connection IDs (they decode to its server ID) and the
    /// unroutable ones of its length; quinn answers only those with a stateless reset.
    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        let bytes: &[u8] = cid;
        let Some(&first) = bytes.first() else {
            return Err(InvalidCid);
        };
        if bytes.len() != self.cid_len {
            return Err(InvalidCid);
        }
        if first == (ConfigId::UNROUTABLE_BITS << 5) | (self.cid_len - 1) as u8 {
            return Ok(());
        }
        match &self.routable {
            Some(r) if r.server.format.server_id(bytes) == Some(r.server.server_id) => Ok(()),
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        self.cid_len
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bits_places_bits_big_endian() {
        let mut b = [0u8; 3];
        put_bits(&mut b, 0, 3, 0b101);
        put_bits(&mut b, 3, 13, 0x1fff);
        put_bits(&mut b, 16, 8, 0x5a);
        assert_eq!(b, [0b1011_1111, 0xff, 0x5a]);
    }

    #[test]
    fn exhaustion_switches_to_unroutable() {
        let f = CidFormat::new(ConfigId::new(1).unwrap(), 1, 4, None, false).unwrap();
        let s = QuicLbServer::new(f, ServerId::new(&[5]).unwrap()).unwrap();
        let mut g = s.generator(NonceSpace::new(3, 256).unwrap()).unwrap();
        if let Some(r) = g.routable.as_deref_mut() {
            r.issued = mask(r.counter_bits) - 1;
        }
        assert!(g.is_routable());
        assert_eq!(g.next_cid().as_bytes()[0] >> 5, 1);
        assert_eq!(g.next_cid().as_bytes()[0] >> 5, 1);
        assert!(!g.is_routable());
        let cid = g.next_cid();
        assert_eq!(cid.as_bytes()[0], 0b111_00101);
        assert!(g.validate(&ConnectionId::new(cid.as_bytes())).is_ok());
    }
}
