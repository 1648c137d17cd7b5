//! The load balancer's side: every config in use at once, chosen by the config
//! rotation bits of each connection ID.

use proxy_core::ConfigError;

use crate::config::DecoderConfig;
use crate::types::{ConfigId, ServerId};
use crate::CidFormat;

/// What a destination connection ID tells the load balancer.
///
/// # Example
/// ```
/// use proxy_quic::{Decoded, Decoder, Unroutable};
/// assert_eq!(Decoder::new().decode(&[0xe0, 1, 2]), Decoded::Unroutable(Unroutable::Reserved));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Route to the server with this ID.
    Routable {
        /// The configuration the connection ID was made under.
        config_id: ConfigId,
        /// The server ID it carries.
        server_id: ServerId,
    },
    /// Not routable by connection ID: fall back to the 4-tuple.
    Unroutable(Unroutable),
}

impl Decoded {
    /// The server ID, if routable.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Decoder::new().decode(&[]).server_id(), None);
    /// ```
    pub fn server_id(&self) -> Option<ServerId> {
        match self {
            Self::Routable { server_id, .. } => Some(*server_id),
            Self::Unroutable(_) => None,
        }
    }
}

/// Why a connection ID is unroutable (draft-21, section 4.1).
///
/// # Example
/// ```
/// assert_eq!(proxy_quic::Unroutable::UnknownConfig.as_str(), "unknown_config");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unroutable {
    /// A zero-length connection ID.
    Empty,
    /// The reserved config rotation codepoint 0b111: a server without config, or
    /// one that has used up its nonces.
    Reserved,
    /// Config rotation bits with no config at this load balancer.
    UnknownConfig,
    /// Shorter than its config's connection IDs.
    TooShort,
    /// The config says every server encodes the length in the first octet, and
    /// this one says another length.
    LengthMismatch,
}

impl Unroutable {
    /// A metric label.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Unroutable::Reserved.as_str(), "reserved");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Reserved => "reserved",
            Self::UnknownConfig => "unknown_config",
            Self::TooShort => "too_short",
            Self::LengthMismatch => "length_mismatch",
        }
    }
}

/// Decodes connection IDs under up to seven configs at once, one per config ID, so
/// that during a rotation connection IDs of the old config and of the new one both
/// route. An immutable value: to rotate, build the next decoder (`clone`, `insert`,
/// `remove`) and swap it in whole.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, CidKey, ConfigId, Decoder, Nonce, ServerId};
/// let old = CidFormat::new(ConfigId::new(0).unwrap(), 2, 4, Some(&CidKey::new([1; 16])), false).unwrap();
/// let new = CidFormat::new(ConfigId::new(1).unwrap(), 2, 6, Some(&CidKey::new([2; 16])), false).unwrap();
/// let sid = ServerId::new(&[0xab, 0xcd]).unwrap();
/// let cid_old = old.encode(&sid, &Nonce::new(&[9; 4]).unwrap(), 0).unwrap();
/// let cid_new = new.encode(&sid, &Nonce::new(&[9; 6]).unwrap(), 0).unwrap();
///
/// let mut decoder = Decoder::new();
/// decoder.insert(old);
/// decoder.insert(new);
/// assert_eq!(decoder.server_id(cid_old.as_bytes()), Some(sid));
/// assert_eq!(decoder.server_id(cid_new.as_bytes()), Some(sid));
///
/// // The rotation is over: config 0 is retired.
/// decoder.remove(ConfigId::new(0).unwrap());
/// assert_eq!(decoder.server_id(cid_old.as_bytes()), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    formats: [Option<CidFormat>; 7],
}

impl Decoder {
    /// A decoder with no config: every connection ID is unroutable.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::Decoder::new().server_id(&[0; 20]).is_none());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `format` under its config ID; returns the format it replaces.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, Decoder};
    /// let mut d = Decoder::new();
    /// let f = CidFormat::new(ConfigId::new(5).unwrap(), 1, 4, None, false).unwrap();
    /// assert!(d.insert(f.clone()).is_none());
    /// assert!(d.insert(f).is_some());
    /// ```
    pub fn insert(&mut self, format: CidFormat) -> Option<CidFormat> {
        let slot = &mut self.formats[usize::from(format.config_id().get())];
        slot.replace(format)
    }

    /// Removes the format of `config_id`.
    ///
    /// # Example
    /// ```
    /// let mut d = proxy_quic::Decoder::new();
    /// assert!(d.remove(proxy_quic::ConfigId::new(0).unwrap()).is_none());
    /// ```
    pub fn remove(&mut self, config_id: ConfigId) -> Option<CidFormat> {
        self.formats[usize::from(config_id.get())].take()
    }

    /// The format of `config_id`.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::Decoder::new().format(proxy_quic::ConfigId::new(0).unwrap()).is_none());
    /// ```
    pub fn format(&self, config_id: ConfigId) -> Option<&CidFormat> {
        self.formats[usize::from(config_id.get())].as_ref()
    }

    /// The formats, by config ID.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Decoder::new().formats().count(), 0);
    /// ```
    pub fn formats(&self) -> impl Iterator<Item = &CidFormat> {
        self.formats.iter().flatten()
    }

    /// Decodes a destination connection ID. `cid` may be the bytes of a short header
    /// from the connection ID on: only the config's length is read.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, Decoded, Decoder, ServerId, Unroutable};
    /// let mut d = Decoder::new();
    /// d.insert(CidFormat::new(ConfigId::new(0).unwrap(), 3, 4, None, true).unwrap());
    /// let cid = [0x07, 0xc4, 0x60, 0x5e, 0x45, 0x04, 0xcc, 0x4f];
    /// assert_eq!(d.decode(&cid), Decoded::Routable {
    ///     config_id: ConfigId::new(0).unwrap(),
    ///     server_id: ServerId::from_hex("c4605e").unwrap(),
    /// });
    /// assert_eq!(d.decode(&cid[..5]), Decoded::Unroutable(Unroutable::TooShort));
    /// assert_eq!(d.decode(&[0x27, 0, 0, 0, 0, 0, 0, 0]), Decoded::Unroutable(Unroutable::UnknownConfig));
    /// ```
    pub fn decode(&self, cid: &[u8]) -> Decoded {
        let Some(&first) = cid.first() else {
            return Decoded::Unroutable(Unroutable::Empty);
        };
        let Some(config_id) = ConfigId::of_first_octet(first) else {
            return Decoded::Unroutable(Unroutable::Reserved);
        };
        let Some(format) = self.format(config_id) else {
            return Decoded::Unroutable(Unroutable::UnknownConfig);
        };
        if cid.len() < format.cid_len() {
            return Decoded::Unroutable(Unroutable::TooShort);
        }
        match format.server_id(cid) {
            Some(server_id) => Decoded::Routable {
                config_id,
                server_id,
            },
            None => Decoded::Unroutable(Unroutable::LengthMismatch),
        }
    }

    /// The server ID of a routable connection ID.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::Decoder::new().server_id(&[0x00; 8]), None);
    /// ```
    pub fn server_id(&self, cid: &[u8]) -> Option<ServerId> {
        self.decode(cid).server_id()
    }
}

impl TryFrom<&DecoderConfig> for Decoder {
    type Error = ConfigError;

    fn try_from(config: &DecoderConfig) -> Result<Self, ConfigError> {
        let mut decoder = Decoder::new();
        let mut first_at = [None::<usize>; 7];
        for (i, c) in config.configs.iter().enumerate() {
            let at = format!("configs[{i}]");
            let format = CidFormat::try_from(c).map_err(|e| e.within(&at))?;
            let id = c.config_id.get();
            if let Some(j) = first_at[usize::from(id)] {
                return Err(ConfigError::new(
                    format!("{at}.config_id"),
                    format!("config ID {id} is already used by configs[{j}]"),
                ));
            }
            first_at[usize::from(id)] = Some(i);
            decoder.insert(format);
        }
        Ok(decoder)
    }
}
