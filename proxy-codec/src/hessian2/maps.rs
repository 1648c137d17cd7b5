//! Maps and objects: string attachments decoded, anything else skipped or kept raw.

use super::{
    error::{HessianError, Result},
    reader::Reader,
};

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

impl<'a> Reader<'a> {
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
