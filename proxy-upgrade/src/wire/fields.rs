//! The fields several messages share, and the [`Reader`] all decoders read with: a
//! record count (`u16`, at most [`MAX_FDS_PER_MESSAGE`]), a listener name
//! (`name_len: u16`, 1..=[`MAX_NAME_BYTES`] bytes of UTF-8) and a text of a
//! `u16` length (an address).

use super::{malformed, MAX_FDS_PER_MESSAGE, MAX_NAME_BYTES};
use crate::UpgradeError;

/// Writes the record count of a `listeners` or `datagrams` message.
pub(super) fn put_record_count(out: &mut Vec<u8>, count: usize) -> Result<(), UpgradeError> {
    if count > MAX_FDS_PER_MESSAGE {
        return Err(malformed(format!("{count} records in one message")));
    }
    out.extend_from_slice(&(count as u16).to_be_bytes());
    Ok(())
}

/// Refuses a listener name that is empty or over [`MAX_NAME_BYTES`].
pub(super) fn check_name(name: &str) -> Result<(), UpgradeError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(malformed(format!("listener name of {} bytes", name.len())));
    }
    Ok(())
}

/// Writes `len: u16` and the bytes of `text`, whose length the caller has bounded
/// ([`check_name`], or an address's few dozen bytes).
pub(super) fn put_text16(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Reads big-endian fields off a payload; running out is a truncation.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], UpgradeError> {
        if self.0.len() < n {
            return Err(UpgradeError::Truncated(format!(
                "a field of {n} bytes with {} left",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, UpgradeError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, UpgradeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, UpgradeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, UpgradeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// The record count of a `listeners` or `datagrams` message.
    pub(super) fn record_count(&mut self) -> Result<usize, UpgradeError> {
        let count = usize::from(self.u16()?);
        if count > MAX_FDS_PER_MESSAGE {
            return Err(UpgradeError::TooManyDescriptors {
                got: count,
                max: MAX_FDS_PER_MESSAGE,
            });
        }
        Ok(count)
    }

    /// A listener name.
    pub(super) fn name(&mut self) -> Result<String, UpgradeError> {
        let len = usize::from(self.u16()?);
        if len == 0 || len > MAX_NAME_BYTES {
            return Err(malformed(format!("listener name of {len} bytes")));
        }
        let name = std::str::from_utf8(self.take(len)?)
            .map_err(|_| malformed("a listener name that is not UTF-8".into()))?;
        Ok(name.to_owned())
    }

    /// A text of a `u16` length; `what` names it when it is not UTF-8
    /// (`"an address"`).
    pub(super) fn text16(&mut self, what: &str) -> Result<&'a str, UpgradeError> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| malformed(format!("{what} that is not UTF-8")))
    }
}
