//! Skipping any value of the final Hessian 2.0 spec (the draft dialect is in
//! `draft.rs`), with the nesting depth bounded by [`MAX_DEPTH`].

use super::{
    error::{HessianError, Result},
    reader::{Reader, MAX_DEPTH},
};

impl Reader<'_> {
    pub(super) fn skip_type(&mut self) -> Result<()> {
        if self.next_is_string() {
            self.skip_string()
        } else {
            self.read_int().map(drop)
        }
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
}
