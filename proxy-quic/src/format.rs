//! One QUIC-LB configuration's connection ID format: encode and decode.

use std::fmt;

use aes::Aes128;

use crate::cipher::{
    aes128, four_pass_decrypt, four_pass_encrypt, four_pass_server_id, single_pass_decrypt,
    single_pass_encrypt, BLOCK,
};
use crate::types::{Cid, CidKey, ConfigId, Nonce, ServerId, MAX_CID_LEN};
use crate::CidError;

/// The longest server ID plus nonce, in octets.
pub(crate) const MAX_PLAINTEXT: usize = MAX_CID_LEN - 1;

/// How a connection ID is built under one configuration
/// (draft-ietf-quic-load-balancers-21, section 5): config rotation bits, server ID
/// length, nonce length, an optional AES-128 key, and whether the first octet
/// encodes the length.
///
/// - no key: plaintext, the server ID and nonce copied as they are;
/// - a key and server ID + nonce = 16 octets: one AES-128-ECB block;
/// - a key otherwise: the four-pass Feistel network of section 5.4.2.
///
/// Built once from validated values; encoding and decoding never allocate and never
/// panic, whatever the bytes.
///
/// # Example
/// ```
/// use proxy_quic::{CidFormat, CidKey, ConfigId, Nonce, ServerId};
/// let key = CidKey::from_hex("8f95f09245765f80256934e50c66207f").unwrap();
/// let format = CidFormat::new(ConfigId::new(0).unwrap(), 3, 4, Some(&key), true).unwrap();
/// let sid = ServerId::from_hex("ed793a").unwrap();
/// let cid = format.encode(&sid, &Nonce::new(&[0xee, 0x08, 0x0d, 0xbf]).unwrap(), 0).unwrap();
/// // Appendix B of the draft.
/// assert_eq!(cid.to_string(), "0720b1d07b359d3c");
/// assert_eq!(format.server_id(cid.as_bytes()), Some(sid));
/// ```
#[derive(Clone)]
pub struct CidFormat {
    config_id: ConfigId,
    server_id_len: u8,
    nonce_len: u8,
    cipher: Option<Aes128>,
    encodes_length: bool,
}

impl CidFormat {
    /// A format; `encodes_length` is the draft's "first octet encodes CID length"
    /// option (length self-description, section 3.3).
    ///
    /// # Errors
    /// A server ID length outside 1-15, a nonce length outside 4-18, or a sum above 19.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(1).unwrap(), 2, 6, None, false).unwrap();
    /// assert_eq!(f.cid_len(), 9);
    /// assert!(CidFormat::new(ConfigId::new(1).unwrap(), 2, 3, None, false).is_err());
    /// ```
    pub fn new(
        config_id: ConfigId,
        server_id_len: usize,
        nonce_len: usize,
        key: Option<&CidKey>,
        encodes_length: bool,
    ) -> Result<Self, CidError> {
        if !(1..=ServerId::MAX_LEN).contains(&server_id_len) {
            return Err(CidError::ServerIdLength(server_id_len));
        }
        if !(Nonce::MIN_LEN..=Nonce::MAX_LEN).contains(&nonce_len) {
            return Err(CidError::NonceLength(nonce_len));
        }
        if server_id_len + nonce_len > MAX_PLAINTEXT {
            return Err(CidError::TooLong {
                server_id: server_id_len,
                nonce: nonce_len,
            });
        }
        Ok(Self {
            config_id,
            server_id_len: server_id_len as u8,
            nonce_len: nonce_len as u8,
            cipher: key.map(|k| aes128(k.as_bytes())),
            encodes_length,
        })
    }

    /// The config rotation bits.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(4).unwrap(), 2, 6, None, false).unwrap();
    /// assert_eq!(f.config_id().get(), 4);
    /// ```
    pub fn config_id(&self) -> ConfigId {
        self.config_id
    }

    /// The server ID length in octets.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap();
    /// assert_eq!(f.server_id_len(), 2);
    /// ```
    pub fn server_id_len(&self) -> usize {
        usize::from(self.server_id_len)
    }

    /// The nonce length in octets.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap();
    /// assert_eq!(f.nonce_len(), 6);
    /// ```
    pub fn nonce_len(&self) -> usize {
        usize::from(self.nonce_len)
    }

    /// The connection ID length: one octet, the server ID and the nonce.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 15, 4, None, false).unwrap();
    /// assert_eq!(f.cid_len(), 20);
    /// ```
    pub fn cid_len(&self) -> usize {
        1 + self.plaintext_len()
    }

    /// Whether the server ID is encrypted (a key is configured).
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, false).unwrap();
    /// assert!(!f.is_encrypted());
    /// ```
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether the first octet's low five bits carry the length of the rest.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 6, None, true).unwrap();
    /// assert!(f.encodes_length());
    /// ```
    pub fn encodes_length(&self) -> bool {
        self.encodes_length
    }

    fn plaintext_len(&self) -> usize {
        self.server_id_len() + self.nonce_len()
    }

    /// The first octet: config rotation bits, then the length of the rest when the
    /// format encodes it, else the low five bits of `random_bits`.
    ///
    /// # Example
    /// ```
    /// # use proxy_quic::{CidFormat, ConfigId};
    /// let f = CidFormat::new(ConfigId::new(1).unwrap(), 2, 6, None, false).unwrap();
    /// assert_eq!(f.first_octet(0xff), 0b001_11111);
    /// let f = CidFormat::new(ConfigId::new(1).unwrap(), 2, 6, None, true).unwrap();
    /// assert_eq!(f.first_octet(0xff), 0b001_01000);
    /// ```
    pub fn first_octet(&self, random_bits: u8) -> u8 {
        let low = if self.encodes_length {
            self.plaintext_len() as u8
        } else {
            random_bits & 0x1f
        };
        (self.config_id.get() << 5) | low
    }

    /// Encodes a connection ID for `server_id` and `nonce`; `random_bits` fill the
    /// first octet's low five bits unless the format encodes the length there.
    ///
    /// # Errors
    /// A server ID or nonce of another length than the format's.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, Nonce, ServerId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 2, 4, None, false).unwrap();
    /// let cid = f.encode(&ServerId::new(&[0xab, 0xcd]).unwrap(), &Nonce::new(&[1, 2, 3, 4]).unwrap(), 0x1f).unwrap();
    /// assert_eq!(cid.as_bytes(), &[0x1f, 0xab, 0xcd, 1, 2, 3, 4]);
    /// ```
    pub fn encode(
        &self,
        server_id: &ServerId,
        nonce: &Nonce,
        random_bits: u8,
    ) -> Result<Cid, CidError> {
        if server_id.len() != self.server_id_len() {
            return Err(CidError::WrongLength {
                what: "a server ID",
                got: server_id.len(),
                want: self.server_id_len(),
            });
        }
        if nonce.as_bytes().len() != self.nonce_len() {
            return Err(CidError::WrongLength {
                what: "a nonce",
                got: nonce.as_bytes().len(),
                want: self.nonce_len(),
            });
        }
        let sid_len = self.server_id_len();
        let len = self.plaintext_len();
        let mut out = [0u8; MAX_CID_LEN];
        out[0] = self.first_octet(random_bits);
        out[1..=sid_len].copy_from_slice(server_id.as_bytes());
        out[1 + sid_len..=len].copy_from_slice(nonce.as_bytes());
        self.encrypt(&mut out[1..=len]);
        Ok(Cid::from_parts(out, 1 + len))
    }

    /// Encrypts server ID + nonce in place (nothing without a key).
    fn encrypt(&self, data: &mut [u8]) {
        let Some(aes) = &self.cipher else { return };
        if data.len() == BLOCK {
            if let Ok(block) = <&mut [u8; BLOCK]>::try_from(data) {
                single_pass_encrypt(aes, block);
            }
        } else if data.len() <= MAX_PLAINTEXT {
            four_pass_encrypt(aes, data);
        }
    }

    /// Whether `cid` is long enough and carries this format's config rotation bits
    /// (and, when the format encodes the length, the right length).
    fn accepts(&self, cid: &[u8]) -> bool {
        let Some(&first) = cid.first() else {
            return false;
        };
        cid.len() >= self.cid_len()
            && first >> 5 == self.config_id.get()
            && (!self.encodes_length || usize::from(first & 0x1f) == self.plaintext_len())
    }

    /// The server ID of `cid`, the load balancer's decode: `cid` may run on past the
    /// connection ID (a short header's bytes), only the format's length is read.
    /// `None` when `cid` is too short, carries other config rotation bits, or, when
    /// the format encodes the length, another length.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, ConfigId, ServerId};
    /// let f = CidFormat::new(ConfigId::new(0).unwrap(), 3, 4, None, true).unwrap();
    /// let sid = f.server_id(&[0x07, 0xc4, 0x60, 0x5e, 0x45, 0x04, 0xcc, 0x4f, 0x99]);
    /// assert_eq!(sid, ServerId::from_hex("c4605e").ok());
    /// assert_eq!(f.server_id(&[0x07, 0xc4]), None);
    /// ```
    pub fn server_id(&self, cid: &[u8]) -> Option<ServerId> {
        if !self.accepts(cid) {
            return None;
        }
        let sid_len = self.server_id_len();
        let data = cid.get(1..self.cid_len())?;
        let Some(aes) = &self.cipher else {
            return ServerId::new(data.get(..sid_len)?);
        };
        let mut sid = [0u8; ServerId::MAX_LEN];
        match <[u8; BLOCK]>::try_from(data) {
            Ok(mut block) => {
                single_pass_decrypt(aes, &mut block);
                sid[..sid_len].copy_from_slice(&block[..sid_len]);
            }
            Err(_) => four_pass_server_id(aes, data, sid_len, &mut sid),
        }
        ServerId::new(&sid[..sid_len])
    }

    /// The server ID and nonce of `cid` (all passes of the decryption); `None` as for
    /// [`CidFormat::server_id`].
    ///
    /// # Example
    /// ```
    /// use proxy_quic::{CidFormat, CidKey, ConfigId, Nonce, ServerId};
    /// let key = CidKey::new([3; 16]);
    /// let f = CidFormat::new(ConfigId::new(2).unwrap(), 5, 6, Some(&key), false).unwrap();
    /// let sid = ServerId::new(&[1, 2, 3, 4, 5]).unwrap();
    /// let nonce = Nonce::new(&[6, 7, 8, 9, 10, 11]).unwrap();
    /// let cid = f.encode(&sid, &nonce, 0).unwrap();
    /// assert_eq!(f.decode(cid.as_bytes()), Some((sid, nonce)));
    /// ```
    pub fn decode(&self, cid: &[u8]) -> Option<(ServerId, Nonce)> {
        if !self.accepts(cid) {
            return None;
        }
        let len = self.plaintext_len();
        let mut data = [0u8; MAX_PLAINTEXT];
        data[..len].copy_from_slice(cid.get(1..=len)?);
        if let Some(aes) = &self.cipher {
            match <&mut [u8; BLOCK]>::try_from(&mut data[..len]) {
                Ok(block) => single_pass_decrypt(aes, block),
                Err(_) => four_pass_decrypt(aes, &mut data[..len]),
            }
        }
        let sid_len = self.server_id_len();
        Some((
            ServerId::new(&data[..sid_len])?,
            Nonce::new(&data[sid_len..len])?,
        ))
    }
}

impl fmt::Debug for CidFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CidFormat")
            .field("config_id", &self.config_id.get())
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("encrypted", &self.cipher.is_some())
            .field("encodes_length", &self.encodes_length)
            .finish()
    }
}
