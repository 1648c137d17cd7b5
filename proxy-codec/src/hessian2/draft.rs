//! The Hessian 2.0 draft dialect (hessian.js 1.x, which sofa-bolt-node encodes
//! `SofaRequest` with): skipping any of its values.

use super::{
    error::{HessianError, Result},
    reader::Reader,
};

impl Reader<'_> {
    /// Skips one draft-dialect value whose nesting depth is `depth`.
    pub(super) fn skip_draft(&mut self, depth: usize) -> Result<()> {
        loop {
            let code = self.byte()?;
            match code {
                0x00..=0x1f | 0x30..=0x33 | b'S' | b's' => {
                    self.string_after(code, &mut |_| Ok(()))?
                }
                0x20..=0x2f => drop(self.take(usize::from(code - 0x20))?),
                b'b' | b'B' => {
                    let mut code = code;
                    while code == b'b' {
                        let n = self.u16()?;
                        self.take(n)?;
                        code = self.byte()?;
                    }
                    match code {
                        b'B' => {
                            let n = self.u16()?;
                            self.take(n)?;
                        }
                        0x20..=0x2f => drop(self.take(usize::from(code - 0x20))?),
                        found => {
                            return Err(HessianError::Unexpected {
                                expected: "binary",
                                found,
                            })
                        }
                    }
                }
                b'F' | b'T' | b'N' | 0x67 | 0x68 | 0x80..=0xbf | 0xd8..=0xef => {}
                0xc0..=0xcf | 0xf0..=0xff | 0x69 | 0x4a => drop(self.take(1)?),
                0xd0..=0xd7 | 0x38..=0x3f | 0x6a | 0x4b => drop(self.take(2)?),
                b'I' | 0x77 | 0x6b | b'R' => drop(self.take(4)?),
                b'L' | b'D' | b'd' => drop(self.take(8)?),
                b'O' => {
                    self.draft_class_def()?;
                    continue;
                }
                b'o' => {
                    let def = self.read_int()?;
                    let n = self.class(def)?.len();
                    for _ in 0..n {
                        self.skip(depth + 1)?;
                    }
                }
                b'V' => {
                    self.skip_draft_type()?;
                    match self.peek()? {
                        b'n' => drop(self.take(2)?),
                        b'l' => drop(self.take(5)?),
                        _ => {}
                    }
                    self.skip_draft_until_end(depth)?;
                }
                b'v' => {
                    self.read_int()?;
                    let n = self.read_int()?;
                    let n = usize::try_from(n).map_err(|_| HessianError::BadLength)?;
                    for _ in 0..n {
                        self.skip(depth + 1)?;
                    }
                }
                b'H' => self.skip_draft_until_end(depth)?,
                b'M' => {
                    self.skip_draft_type()?;
                    self.skip_draft_until_end(depth)?;
                }
                _ => return Err(HessianError::BadCode(code)),
            }
            return Ok(());
        }
    }

    /// Skips values (map entries count as two) up to and including the `z` end mark.
    fn skip_draft_until_end(&mut self, depth: usize) -> Result<()> {
        while self.peek()? != b'z' {
            self.skip(depth + 1)?;
        }
        self.pos += 1;
        Ok(())
    }

    /// Skips an optional type: `t` with a 16-bit length and raw characters, or `T`/`u`
    /// and a type reference.
    pub(super) fn skip_draft_type(&mut self) -> Result<()> {
        match self.peek()? {
            b't' => {
                self.pos += 1;
                let n = self.u16()?;
                self.utf8_units(n)?;
            }
            b'T' | b'u' => {
                // As hessian.js 1.x reads it: a type reference.
                self.pos += 1;
                self.read_int()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads a draft class definition after its `O`: the name as an int length and
    /// raw characters, the field count, the field names.
    pub(super) fn draft_class_def(&mut self) -> Result<()> {
        let n = self.read_int()?;
        let n = usize::try_from(n).map_err(|_| HessianError::BadLength)?;
        self.utf8_units(n)?;
        let count = self.read_int()?;
        let count = usize::try_from(count).map_err(|_| HessianError::BadLength)?;
        let mut fields = Vec::new();
        for _ in 0..count {
            fields.push(self.read_string()?.unwrap_or_default().into_boxed_str());
        }
        self.classes.push(fields.into());
        Ok(())
    }
}
