//! The small values of QUIC-LB: config IDs, server IDs, nonces, keys and the encoded
//! connection ID.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::hex::{decode_hex, to_hex, write_hex};

/// The largest QUIC version 1 connection ID, in octets.
pub const MAX_CID_LEN: usize = 20;

/// A configuration's identifier, the three config rotation bits at the top of a
/// connection ID's first octet: 0-6. The codepoint 0b111 is reserved for unroutable
/// connection IDs ([`ConfigId::UNROUTABLE_BITS`]) and is never a `ConfigId`.
///
/// In config it is a plain number; serde refuses 7 and above.
///
/// # Example
/// ```
/// use proxy_quic::ConfigId;
/// let id = ConfigId::new(2).unwrap();
/// assert_eq!(id.get(), 2);
/// assert_eq!(ConfigId::of_first_octet(0b0101_0000), Some(id));
/// assert!(ConfigId::new(7).is_none());
/// assert_eq!(ConfigId::of_first_octet(0xff), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigId(u8);

impl ConfigId {
    /// The reserved config rotation codepoint of unroutable connection IDs.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::ConfigId::UNROUTABLE_BITS, 0b111);
    /// ```
    pub const UNROUTABLE_BITS: u8 = 0b111;

    /// The ID `bits`, if it is 0-6.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::ConfigId::new(6).is_some());
    /// ```
    pub fn new(bits: u8) -> Option<Self> {
        (bits < Self::UNROUTABLE_BITS).then_some(Self(bits))
    }

    /// The three bits as a number, 0-6.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::ConfigId::new(3).unwrap().get(), 3);
    /// ```
    pub fn get(self) -> u8 {
        self.0
    }

    /// The config a connection ID's first octet names; `None` for the unroutable
    /// codepoint 0b111.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::ConfigId;
    /// assert_eq!(ConfigId::of_first_octet(0x27).map(ConfigId::get), Some(1));
    /// ```
    pub fn of_first_octet(octet: u8) -> Option<Self> {
        Self::new(octet >> 5)
    }
}

impl Serialize for ConfigId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for ConfigId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u8::deserialize(d)?;
        Self::new(bits).ok_or_else(|| {
            de::Error::custom(format!(
                "{bits} is not a config ID: use 0-6 (7 is reserved for unroutable connection IDs)"
            ))
        })
    }
}

/// A server ID: 1-15 octets, written in config as hex (`"c4605e"`).
///
/// # Example
/// ```
/// use proxy_quic::ServerId;
/// let id = ServerId::from_hex("c4605e").unwrap();
/// assert_eq!(id.as_bytes(), &[0xc4, 0x60, 0x5e]);
/// assert_eq!(id.len(), 3);
/// assert_eq!(id.to_string(), "c4605e");
/// assert!(ServerId::new(&[]).is_none());
/// assert!(ServerId::new(&[0; 16]).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    len: u8,
    bytes: [u8; ServerId::MAX_LEN],
}

impl ServerId {
    /// The longest server ID, in octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::ServerId::MAX_LEN, 15);
    /// ```
    pub const MAX_LEN: usize = 15;

    /// The server ID `bytes`, if they are 1-15 octets.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::ServerId::new(&[1, 2]).is_some());
    /// ```
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return None;
        }
        let mut id = Self {
            len: bytes.len() as u8,
            bytes: [0; Self::MAX_LEN],
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// Parses hex (2-30 digits).
    ///
    /// # Errors
    /// Why the text is not a server ID.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::ServerId::from_hex("0g").is_err());
    /// ```
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = decode_hex(text).map_err(|e| format!("{text:?} has {e}"))?;
        Self::new(&bytes).ok_or_else(|| {
            format!(
                "{text:?} is {} octets; a server ID is 1-15 octets",
                bytes.len()
            )
        })
    }

    /// The octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::ServerId::new(&[9]).unwrap().as_bytes(), &[9]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The length in octets, 1-15.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::ServerId::new(&[9, 9]).unwrap().len(), 2);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerId(")?;
        write_hex(f, self.as_bytes())?;
        f.write_str(")")
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}

impl Serialize for ServerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for ServerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(de::Error::custom)
    }
}

/// The nonce of a connection ID: 4-18 octets.
///
/// # Example
/// ```
/// let n = proxy_quic::Nonce::new(&[1, 2, 3, 4]).unwrap();
/// assert_eq!(n.as_bytes(), &[1, 2, 3, 4]);
/// assert!(proxy_quic::Nonce::new(&[1, 2, 3]).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce {
    len: u8,
    bytes: [u8; Nonce::MAX_LEN],
}

impl Nonce {
    /// The shortest nonce, in octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Nonce::MIN_LEN, 4);
    /// ```
    pub const MIN_LEN: usize = 4;
    /// The longest nonce, in octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Nonce::MAX_LEN, 18);
    /// ```
    pub const MAX_LEN: usize = 18;

    /// The nonce `bytes`, if they are 4-18 octets.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::Nonce::new(&[0; 18]).is_some());
    /// ```
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return None;
        }
        let mut n = Self {
            len: bytes.len() as u8,
            bytes: [0; Self::MAX_LEN],
        };
        n.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(n)
    }

    /// The octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Nonce::new(&[0; 5]).unwrap().as_bytes().len(), 5);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A 16-octet AES-128 key, written in config as 32 hex digits. `Debug` does not show
/// it.
///
/// # Example
/// ```
/// use proxy_quic::CidKey;
/// let key = CidKey::from_hex("8f95f09245765f80256934e50c66207f").unwrap();
/// assert_eq!(key.as_bytes()[0], 0x8f);
/// assert_eq!(format!("{key:?}"), "CidKey(..)");
/// assert!(CidKey::from_hex("8f95").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CidKey([u8; 16]);

impl CidKey {
    /// The key `bytes`.
    ///
    /// # Example
    /// ```
    /// let key = proxy_quic::CidKey::new([7; 16]);
    /// assert_eq!(key.as_bytes(), &[7; 16]);
    /// ```
    pub fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// Why the text is not a key (without repeating it).
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::CidKey::from_hex(&"ab".repeat(16)).is_ok());
    /// ```
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = decode_hex(text).map_err(|e| format!("the key has {e}"))?;
        let len = bytes.len();
        bytes.try_into().map(Self).map_err(|_| {
            format!("the key is {len} octets; an AES-128 key is 16 octets (32 hex digits)")
        })
    }

    /// The octets.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::CidKey::new([1; 16]).as_bytes().len(), 16);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for CidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CidKey(..)")
    }
}

impl Serialize for CidKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for CidKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(de::Error::custom)
    }
}

/// An encoded connection ID, up to 20 octets.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, ConfigId, Nonce, ServerId};
/// let format = CidFormat::new(ConfigId::new(0).unwrap(), 3, 4, None, true).unwrap();
/// let sid = ServerId::from_hex("c4605e").unwrap();
/// let cid = format.encode(&sid, &Nonce::new(&[0x45, 0x04, 0xcc, 0x4f]).unwrap(), 0).unwrap();
/// assert_eq!(cid.to_string(), "07c4605e4504cc4f");
/// assert_eq!(cid.len(), 8);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cid {
    len: u8,
    bytes: [u8; MAX_CID_LEN],
}

impl Cid {
    pub(crate) fn from_parts(bytes: [u8; MAX_CID_LEN], len: usize) -> Self {
        Self {
            len: len.min(MAX_CID_LEN) as u8,
            bytes,
        }
    }

    /// The octets.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Nonce, ServerId};
    /// # let format = CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, true).unwrap();
    /// let cid = format.encode(&ServerId::new(&[1]).unwrap(), &Nonce::new(&[2; 4]).unwrap(), 0).unwrap();
    /// assert_eq!(cid.as_bytes(), &[0x05, 1, 2, 2, 2, 2]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The length in octets.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId, Nonce, ServerId};
    /// # let format = CidFormat::new(ConfigId::new(0).unwrap(), 1, 4, None, false).unwrap();
    /// let cid = format.encode(&ServerId::new(&[1]).unwrap(), &Nonce::new(&[2; 4]).unwrap(), 0).unwrap();
    /// assert_eq!(cid.len(), 6);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cid(")?;
        write_hex(f, self.as_bytes())?;
        f.write_str(")")
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}
