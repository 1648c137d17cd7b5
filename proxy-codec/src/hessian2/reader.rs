//! The cursor: position, ints, strings and class definitions. Skipping is in
//! `skip.rs` (and `draft.rs`), maps and objects in `maps.rs`.

use std::sync::Arc;

use super::error::{HessianError, Result};

/// How deep lists, maps and objects may nest before the reader gives up.
pub const MAX_DEPTH: usize = 64;

/// A cursor over hessian2 bytes: reads strings, ints and string maps, skips anything.
///
/// Class definitions met on the way are remembered (objects refer to them by index),
/// so one `Reader` should read one hessian2 stream from its start.
#[derive(Debug)]
pub struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) classes: Vec<Arc<[Box<str>]>>,
    pub(super) draft: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            classes: Vec::new(),
            draft: false,
        }
    }

    /// A reader of the Hessian 2.0 *draft* dialect that hessian.js 1.x writes (and so
    /// sofa-bolt-node's `SofaRequest`): `O` class definitions with raw names, `o`
    /// instances, `s`/`b` chunks, `V`/`M`/`H` ended by `z`, one-byte-code refs.
    pub fn draft(buf: &'a [u8]) -> Self {
        Self {
            draft: true,
            ..Self::new(buf)
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The next type code, not consumed.
    ///
    /// # Errors
    /// [`HessianError::Eof`] at the end of the input.
    pub fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or(HessianError::Eof)
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(HessianError::Eof)?;
        let s = self.buf.get(self.pos..end).ok_or(HessianError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(b[0]) << 8 | usize::from(b[1]))
    }

    /// Reads an int (any of its encodings).
    ///
    /// # Errors
    /// [`HessianError::Unexpected`] if the next value is not an int.
    pub fn read_int(&mut self) -> Result<i32> {
        let code = self.byte()?;
        self.int_after(code)
    }

    fn int_after(&mut self, code: u8) -> Result<i32> {
        let c = i32::from(code);
        Ok(match code {
            0x80..=0xbf => c - 0x90,
            0xc0..=0xcf => ((c - 0xc8) << 8) | i32::from(self.byte()?),
            0xd0..=0xd7 => {
                let b = self.take(2)?;
                ((c - 0xd4) << 16) | i32::from(b[0]) << 8 | i32::from(b[1])
            }
            b'I' => {
                let b = self.take(4)?;
                i32::from_be_bytes([b[0], b[1], b[2], b[3]])
            }
            found => {
                return Err(HessianError::Unexpected {
                    expected: "int",
                    found,
                })
            }
        })
    }

    /// Reads a string; `None` for a hessian null.
    ///
    /// Java's modified UTF-8 (surrogate pairs as two 3-byte sequences) is accepted.
    ///
    /// # Errors
    /// [`HessianError::Unexpected`] if the next value is neither a string nor null.
    pub fn read_string(&mut self) -> Result<Option<String>> {
        let code = self.byte()?;
        if code == b'N' {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        self.string_after(code, &mut |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let mut units = Vec::new();
                decode_units(e.as_bytes(), &mut units)?;
                Ok(Some(String::from_utf16_lossy(&units)))
            }
        }
    }

    /// Whether the next value is a string (of any encoding).
    pub fn next_is_string(&self) -> bool {
        match self.peek() {
            Ok(0x00..=0x1f | 0x30..=0x33 | b'S') => true,
            Ok(b'R') => !self.draft,
            Ok(b's') => self.draft,
            _ => false,
        }
    }

    /// Reads the next value as a string if it is one; skips it and returns `None`
    /// otherwise.
    ///
    /// # Errors
    /// Malformed input.
    pub fn string_or_skip(&mut self) -> Result<Option<String>> {
        if self.next_is_string() {
            self.read_string()
        } else {
            self.skip_value().map(|()| None)
        }
    }

    /// Calls `each` with the string chunks of the string whose first type code is `code`.
    pub(super) fn string_after(
        &mut self,
        mut code: u8,
        each: &mut dyn FnMut(&'a [u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            let (units, last) = match code {
                0x00..=0x1f => (usize::from(code), true),
                0x30..=0x33 => (
                    usize::from(code - 0x30) << 8 | usize::from(self.byte()?),
                    true,
                ),
                b'S' => (self.u16()?, true),
                b'R' if !self.draft => (self.u16()?, false),
                b's' if self.draft => (self.u16()?, false),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "string",
                        found,
                    })
                }
            };
            let bytes = self.utf8_units(units)?;
            each(bytes)?;
            if last {
                return Ok(());
            }
            code = self.byte()?;
        }
    }

    /// Consumes `units` UTF-16 code units' worth of UTF-8 bytes.
    pub(super) fn utf8_units(&mut self, units: usize) -> Result<&'a [u8]> {
        let start = self.pos;
        let mut n = 0;
        while n < units {
            let (len, u) = match self.peek()? {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 => (4, 2),
                _ => return Err(HessianError::BadUtf8),
            };
            self.take(len)?;
            n += u;
        }
        Ok(&self.buf[start..self.pos])
    }

    /// Reads a class definition after its `C`.
    pub(super) fn class_def(&mut self) -> Result<()> {
        self.skip_string()?;
        let n = self.read_int()?;
        let n = usize::try_from(n).map_err(|_| HessianError::BadLength)?;
        let mut fields = Vec::new();
        for _ in 0..n {
            fields.push(self.read_string()?.unwrap_or_default().into_boxed_str());
        }
        self.classes.push(fields.into());
        Ok(())
    }

    pub(super) fn skip_string(&mut self) -> Result<()> {
        let code = self.byte()?;
        self.string_after(code, &mut |_| Ok(()))
    }

    pub(super) fn class(&self, index: i32) -> Result<Arc<[Box<str>]>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.classes.get(i))
            .cloned()
            .ok_or(HessianError::NoClassDef(i64::from(index)))
    }
}

/// Decodes (modified) UTF-8 into UTF-16 code units.
fn decode_units(bytes: &[u8], units: &mut Vec<u16>) -> Result<()> {
    let mut i = 0;
    while i < bytes.len() {
        let b0 = u32::from(bytes[i]);
        let cont = |k: usize| -> Result<u32> {
            bytes
                .get(i + k)
                .filter(|b| *b & 0xc0 == 0x80)
                .map(|b| u32::from(*b & 0x3f))
                .ok_or(HessianError::BadUtf8)
        };
        match b0 {
            0x00..=0x7f => {
                units.push(b0 as u16);
                i += 1;
            }
            0xc0..=0xdf => {
                units.push((((b0 & 0x1f) << 6) | cont(1)?) as u16);
                i += 2;
            }
            0xe0..=0xef => {
                units.push((((b0 & 0x0f) << 12) | cont(1)? << 6 | cont(2)?) as u16);
                i += 3;
            }
            0xf0..=0xf7 => {
                let c = ((b0 & 0x07) << 18) | cont(1)? << 12 | cont(2)? << 6 | cont(3)?;
                let mut pair = [0u16; 2];
                match char::from_u32(c) {
                    Some(ch) => units.extend_from_slice(ch.encode_utf16(&mut pair)),
                    None => return Err(HessianError::BadUtf8),
                }
                i += 4;
            }
            _ => return Err(HessianError::BadUtf8),
        }
    }
    Ok(())
}
