//! Disjoint parts of a server's nonce space, one per process and worker.

use crate::CidError;

/// One of `count` disjoint parts of a server's nonce space: the nonces whose top
/// `ceil(log2(count))` bits are `index`. Generators of distinct parts can never issue
/// the same nonce, so a server with one server ID and many processes and workers
/// still never issues one connection ID twice.
///
/// Parts nest: a process takes part `p` of `P`, then splits it among its `W` workers
/// ([`NonceSpace::split`]); worker `w` of process `p` gets part `p * W + w` of `P * W`.
/// For a hot upgrade, the old and the new process must hold different parts (for
/// example part `generation % 2` of 2), since both issue connection IDs for a while.
///
/// # Example
/// ```
/// use proxy_quic::NonceSpace;
/// let process = NonceSpace::new(1, 2).unwrap();       // the second of two processes
/// let worker = process.split(3, 4).unwrap();          // its fourth worker of four
/// assert_eq!((worker.index(), worker.count()), (7, 8));
/// assert_eq!(worker.prefix_bits(), 3);
/// assert!(NonceSpace::new(2, 2).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NonceSpace {
    index: u32,
    count: u32,
}

impl NonceSpace {
    /// The whole nonce space: one generator for the server ID.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::NonceSpace::WHOLE.prefix_bits(), 0);
    /// ```
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Part `index` of `count`.
    ///
    /// # Errors
    /// `count` zero or `index` not below it.
    ///
    /// # Example
    /// ```
    /// assert!(proxy_quic::NonceSpace::new(0, 1).is_ok());
    /// assert!(proxy_quic::NonceSpace::new(0, 0).is_err());
    /// ```
    pub fn new(index: u32, count: u32) -> Result<Self, CidError> {
        if index >= count {
            return Err(CidError::NonceSpaceIndex { index, count });
        }
        Ok(Self { index, count })
    }

    /// Part `index` of `count` of this part.
    ///
    /// # Errors
    /// `count` zero, `index` not below it, or more than `u32::MAX` parts in all.
    ///
    /// # Example
    /// ```
    /// let w = proxy_quic::NonceSpace::WHOLE.split(1, 3).unwrap();
    /// assert_eq!((w.index(), w.count()), (1, 3));
    /// ```
    pub fn split(self, index: u32, count: u32) -> Result<Self, CidError> {
        let inner = Self::new(index, count)?;
        let total = self.count.checked_mul(inner.count);
        let at = self
            .index
            .checked_mul(inner.count)
            .and_then(|i| i.checked_add(inner.index));
        match (at, total) {
            (Some(index), Some(count)) => Self::new(index, count),
            _ => Err(CidError::NonceSpaceIndex { index, count }),
        }
    }

    /// The part's index.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::NonceSpace::new(2, 5).unwrap().index(), 2);
    /// ```
    pub fn index(self) -> u32 {
        self.index
    }

    /// The number of parts.
    ///
    /// # Example
    /// ```
    /// assert_eq!(proxy_quic::NonceSpace::new(2, 5).unwrap().count(), 5);
    /// ```
    pub fn count(self) -> u32 {
        self.count
    }

    /// The nonce bits the index takes: the fewest that hold `count - 1`.
    ///
    /// # Example
    /// ```
    /// use proxy_quic::NonceSpace;
    /// assert_eq!(NonceSpace::new(0, 2).unwrap().prefix_bits(), 1);
    /// assert_eq!(NonceSpace::new(0, 5).unwrap().prefix_bits(), 3);
    /// assert_eq!(NonceSpace::new(0, 8).unwrap().prefix_bits(), 3);
    /// ```
    pub fn prefix_bits(self) -> u32 {
        u32::BITS - (self.count - 1).leading_zeros()
    }
}

impl Default for NonceSpace {
    fn default() -> Self {
        Self::WHOLE
    }
}
