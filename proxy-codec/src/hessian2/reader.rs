//! Reading and skipping hessian2 values.

use std::sync::Arc;

/// How deep lists, maps and objects may nest before the reader gives up.
pub const MAX_DEPTH: usize = 64;

/// Why a hessian2 value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HessianError {
    /// The input ended inside a value.
    #[error("unexpected end of input")]
    Eof,
    /// A reserved or unknown type code.
    #[error("reserved type code 0x{0:02x}")]
    BadCode(u8),
    /// A value of another type than the one asked for.
    #[error("expected {expected}, found type code 0x{found:02x}")]
    Unexpected {
        /// What the reader asked for.
        expected: &'static str,
        /// The type code found.
        found: u8,
    },
    /// Lists, maps or objects nested deeper than [`MAX_DEPTH`].
    #[error("values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// An object refers to a class definition that was not given.
    #[error("object refers to undefined class definition {0}")]
    NoClassDef(i64),
    /// A negative length or count.
    #[error("negative length")]
    BadLength,
    /// A string's bytes are not UTF-8 (nor Java's modified UTF-8).
    #[error("string is not valid utf-8")]
    BadUtf8,
}

type Result<T> = std::result::Result<T, HessianError>;

/// One entry of a map read with [`Reader::read_map`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapEntry<'a> {
    /// A string key with a string (or null) value.
    Strings {
        /// The key.
        key: String,
        /// The value; `None` for null.
        value: Option<String>,
        /// The entry's bytes.
        raw: &'a [u8],
    },
    /// Any other entry, as its bytes (key then value).
    Other {
        /// The entry's bytes.
        raw: &'a [u8],
    },
}

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

    fn skip_type(&mut self) -> Result<()> {
        if self.next_is_string() {
            self.skip_string()
        } else {
            self.read_int().map(drop)
        }
    }

    pub(super) fn class(&self, index: i32) -> Result<Arc<[Box<str>]>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.classes.get(i))
            .cloned()
            .ok_or(HessianError::NoClassDef(i64::from(index)))
    }

    /// Skips one value of any type.
    ///
    /// # Errors
    /// Malformed or truncated input, or nesting deeper than [`MAX_DEPTH`].
    pub fn skip_value(&mut self) -> Result<()> {
        self.skip(0)
    }

    pub(super) fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(HessianError::TooDeep);
        }
        if self.draft {
            return self.skip_draft(depth);
        }
        loop {
            let code = self.byte()?;
            match code {
                0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => {
                    self.string_after(code, &mut |_| Ok(()))?
                }
                0x20..=0x2f | 0x34..=0x37 | b'A' | b'B' => self.binary_after(code)?,
                0x38..=0x3f | 0x5e | 0xd0..=0xd7 => drop(self.take(2)?),
                b'C' => {
                    self.class_def()?;
                    continue;
                }
                b'D' | b'J' | b'L' => drop(self.take(8)?),
                b'F' | b'N' | b'T' | 0x5b | 0x5c | 0x80..=0xbf | 0xd8..=0xef => {}
                b'H' => self.skip_map_entries(depth)?,
                b'I' | b'K' | b'Y' | 0x5f => drop(self.take(4)?),
                b'M' => {
                    self.skip_type()?;
                    self.skip_map_entries(depth)?;
                }
                b'O' => {
                    let def = self.read_int()?;
                    let n = self.class(def)?.len();
                    self.skip_n(n, depth)?;
                }
                0x60..=0x6f => {
                    let n = self.class(i32::from(code - 0x60))?.len();
                    self.skip_n(n, depth)?;
                }
                b'Q' => drop(self.read_int()?),
                b'U' => {
                    self.skip_type()?;
                    self.skip_until_end(depth)?;
                }
                b'V' => {
                    self.skip_type()?;
                    let n = self.read_int()?;
                    self.skip_n(
                        usize::try_from(n).map_err(|_| HessianError::BadLength)?,
                        depth,
                    )?;
                }
                b'W' => self.skip_until_end(depth)?,
                b'X' => {
                    let n = self.read_int()?;
                    self.skip_n(
                        usize::try_from(n).map_err(|_| HessianError::BadLength)?,
                        depth,
                    )?;
                }
                0x5d | 0xc0..=0xcf | 0xf0..=0xff => drop(self.take(1)?),
                0x70..=0x77 => {
                    self.skip_type()?;
                    self.skip_n(usize::from(code - 0x70), depth)?;
                }
                0x78..=0x7f => self.skip_n(usize::from(code - 0x78), depth)?,
                _ => return Err(HessianError::BadCode(code)),
            }
            return Ok(());
        }
    }

    fn binary_after(&mut self, mut code: u8) -> Result<()> {
        loop {
            let (len, last) = match code {
                0x20..=0x2f => (usize::from(code - 0x20), true),
                0x34..=0x37 => (
                    usize::from(code - 0x34) << 8 | usize::from(self.byte()?),
                    true,
                ),
                b'B' => (self.u16()?, true),
                b'A' => (self.u16()?, false),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "binary",
                        found,
                    })
                }
            };
            self.take(len)?;
            if last {
                return Ok(());
            }
            code = self.byte()?;
        }
    }

    fn skip_n(&mut self, n: usize, depth: usize) -> Result<()> {
        // Every value is at least one byte, so a huge count fails at the end of input.
        for _ in 0..n {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn skip_until_end(&mut self, depth: usize) -> Result<()> {
        while self.peek()? != b'Z' {
            self.skip(depth + 1)?;
        }
        self.pos += 1;
        Ok(())
    }

    fn skip_map_entries(&mut self, depth: usize) -> Result<()> {
        while self.peek()? != b'Z' {
            self.skip(depth + 1)?;
            self.skip(depth + 1)?;
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads a map (untyped `H`, typed `M`, or null), calling `each` with every entry
    /// whose key and value are both strings (or a null value); other entries are
    /// skipped.
    ///
    /// # Errors
    /// [`HessianError::Unexpected`] if the next value is not a map; malformed input.
    pub fn read_string_map(&mut self, each: &mut dyn FnMut(String, Option<String>)) -> Result<()> {
        self.read_map(&mut |e| {
            if let MapEntry::Strings { key, value, .. } = e {
                each(key, value);
            }
        })
    }

    /// Reads a map (untyped `H`, typed `M`, or null), calling `each` with every entry:
    /// string pairs (or a string key with a null value) decoded, anything else as its
    /// raw bytes.
    ///
    /// # Errors
    /// [`HessianError::Unexpected`] if the next value is not a map; malformed input.
    pub fn read_map(&mut self, each: &mut dyn FnMut(MapEntry<'a>)) -> Result<()> {
        let end = if self.draft { b'z' } else { b'Z' };
        match self.byte()? {
            b'N' => return Ok(()),
            b'H' => {}
            b'M' if self.draft => self.skip_draft_type()?,
            b'M' => self.skip_type()?,
            found => {
                return Err(HessianError::Unexpected {
                    expected: "map",
                    found,
                })
            }
        }
        while self.peek()? != end {
            let start = self.pos;
            let key = self.string_or_skip()?;
            let value_is_null = self.peek()? == b'N';
            let value = self.string_or_skip()?;
            let raw = &self.buf[start..self.pos];
            match key {
                Some(key) if value.is_some() || value_is_null => {
                    each(MapEntry::Strings { key, value, raw })
                }
                _ => each(MapEntry::Other { raw }),
            }
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads an object (with any class definitions before it), calling `field` with
    /// each field's name; `field` either reads the value and returns `true`, or returns
    /// `false` to have it skipped.
    ///
    /// # Errors
    /// [`HessianError::Unexpected`] if the next value is not an object; malformed input.
    pub fn read_object(
        &mut self,
        field: &mut dyn FnMut(&str, &mut Reader<'a>) -> Result<bool>,
    ) -> Result<()> {
        let def = loop {
            match self.byte()? {
                b'O' if self.draft => self.draft_class_def()?,
                b'o' if self.draft => break self.read_int()?,
                b'C' if !self.draft => self.class_def()?,
                b'O' if !self.draft => break self.read_int()?,
                code @ 0x60..=0x6f if !self.draft => break i32::from(code - 0x60),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "object",
                        found,
                    })
                }
            }
        };
        let fields = self.class(def)?;
        for name in fields.iter() {
            if !field(name, self)? {
                self.skip(1)?;
            }
        }
        Ok(())
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
