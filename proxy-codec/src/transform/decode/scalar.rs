//! Scalars: ints and longs, doubles, strings, binary, counts and type names, in
//! both dialects.

use serde_json::Value;

use super::{Decoder, Result};
use crate::hessian2::HessianError;

impl Decoder<'_> {
    pub(super) fn int_value(&mut self, code: u8) -> Result<Option<i64>> {
        let c = i64::from(code);
        Ok(Some(match code {
            0x80..=0xbf => c - 0x90,
            0xc0..=0xcf => ((c - 0xc8) << 8) | i64::from(self.byte()?),
            0xd0..=0xd7 => ((c - 0xd4) << 16) | self.be(2)? as i64,
            b'I' => i64::from(self.be(4)? as u32 as i32),
            0xd8..=0xef => c - 0xe0,
            0xf0..=0xff => ((c - 0xf8) << 8) | i64::from(self.byte()?),
            0x38..=0x3f => ((c - 0x3c) << 16) | self.be(2)? as i64,
            b'Y' if !self.draft => i64::from(self.be(4)? as u32 as i32),
            0x77 if self.draft => i64::from(self.be(4)? as u32 as i32),
            b'L' => self.be(8)? as i64,
            _ => return Ok(None),
        }))
    }

    pub(super) fn double_value(&mut self, code: u8) -> Result<Option<f64>> {
        let (zero, one, byte, short, float) = if self.draft {
            (0x67, 0x68, 0x69, 0x6a, 0x6b)
        } else {
            (0x5b, 0x5c, 0x5d, 0x5e, 0x5f)
        };
        Ok(Some(match code {
            b'D' => f64::from_bits(self.be(8)?),
            c if c == zero => 0.0,
            c if c == one => 1.0,
            c if c == byte => f64::from(self.byte()? as i8),
            c if c == short => f64::from(self.be(2)? as u16 as i16),
            // Final: an int of thousandths; draft: an IEEE float.
            c if c == float && self.draft => f64::from(f32::from_bits(self.be(4)? as u32)),
            c if c == float => f64::from(self.be(4)? as u32 as i32) / 1000.0,
            _ => return Ok(None),
        }))
    }

    pub(super) fn string_after(&mut self, mut code: u8) -> Result<String> {
        let mut units: Vec<u16> = Vec::new();
        loop {
            let (n, last) = match code {
                0x00..=0x1f => (usize::from(code), true),
                0x30..=0x33 => (
                    usize::from(code - 0x30) << 8 | usize::from(self.byte()?),
                    true,
                ),
                b'S' => (self.be(2)? as usize, true),
                b'R' if !self.draft => (self.be(2)? as usize, false),
                b's' if self.draft => (self.be(2)? as usize, false),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "string",
                        found,
                    })
                }
            };
            self.utf16_units(n, &mut units)?;
            if last {
                return Ok(String::from_utf16_lossy(&units));
            }
            code = self.byte()?;
        }
    }

    /// Reads `n` UTF-16 units of (modified) UTF-8.
    pub(super) fn utf16_units(&mut self, n: usize, out: &mut Vec<u16>) -> Result<()> {
        let mut done = 0;
        while done < n {
            let b0 = u32::from(self.byte()?);
            let mut cont = || -> Result<u32> {
                let b = self.byte()?;
                if b & 0xc0 == 0x80 {
                    Ok(u32::from(b & 0x3f))
                } else {
                    Err(HessianError::BadUtf8)
                }
            };
            match b0 {
                0x00..=0x7f => out.push(b0 as u16),
                0xc0..=0xdf => out.push((((b0 & 0x1f) << 6) | cont()?) as u16),
                0xe0..=0xef => {
                    let c = ((b0 & 0x0f) << 12) | cont()? << 6;
                    out.push((c | cont()?) as u16);
                }
                0xf0..=0xf7 => {
                    let c = ((b0 & 0x07) << 18) | cont()? << 12;
                    let c = c | cont()? << 6;
                    let c = c | cont()?;
                    let ch = char::from_u32(c).ok_or(HessianError::BadUtf8)?;
                    let mut pair = [0u16; 2];
                    out.extend_from_slice(ch.encode_utf16(&mut pair));
                    done += 1;
                }
                _ => return Err(HessianError::BadUtf8),
            }
            done += 1;
        }
        Ok(())
    }

    pub(super) fn string(&mut self) -> Result<String> {
        let code = self.byte()?;
        self.string_after(code)
    }

    pub(super) fn binary_after(&mut self, mut code: u8) -> Result<Value> {
        let mut bytes = Vec::new();
        loop {
            let (n, last) = match code {
                0x20..=0x2f => (usize::from(code - 0x20), true),
                0x34..=0x37 if !self.draft => (
                    usize::from(code - 0x34) << 8 | usize::from(self.byte()?),
                    true,
                ),
                b'B' => (self.be(2)? as usize, true),
                b'A' if !self.draft => (self.be(2)? as usize, false),
                b'b' if self.draft => (self.be(2)? as usize, false),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "binary",
                        found,
                    })
                }
            };
            bytes.extend_from_slice(self.take(n)?);
            if last {
                return Ok(Value::String(base64(&bytes)));
            }
            code = self.byte()?;
        }
    }

    pub(super) fn count(&mut self) -> Result<usize> {
        let code = self.byte()?;
        let n = self.int_value(code)?.ok_or(HessianError::Unexpected {
            expected: "int",
            found: code,
        })?;
        usize::try_from(n).map_err(|_| HessianError::BadLength)
    }

    /// A type name (final: a string or a type reference; draft: `t` and raw chars).
    pub(super) fn skip_type(&mut self) -> Result<()> {
        if self.draft {
            match self.peek()? {
                b't' => {
                    self.pos += 1;
                    let n = self.be(2)? as usize;
                    self.utf16_units(n, &mut Vec::new())?;
                }
                b'T' | b'u' => {
                    self.pos += 1;
                    self.count()?;
                }
                _ => {}
            }
            return Ok(());
        }
        match self.peek()? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => drop(self.string()?),
            _ => drop(self.count()?),
        }
        Ok(())
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
