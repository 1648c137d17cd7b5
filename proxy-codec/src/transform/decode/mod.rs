//! hessian2 values to JSON, in the final spec and the draft dialect (hessian.js 1.x,
//! which sofa-rpc-node answers in), with the nesting depth bounded and every length
//! checked against the input: any bytes give a value or an error, never a panic.

use serde_json::{Map, Number, Value};

use crate::hessian2::{HessianError, MAX_DEPTH};

mod scalar;

pub(super) type Result<T> = std::result::Result<T, HessianError>;

/// A value read, and the class name when it was an object (exceptions are told
/// apart by it).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The value as JSON: objects and maps as JSON objects, lists and arrays as JSON
    /// arrays, binary as base64, dates as milliseconds since the epoch.
    pub value: Value,
    /// The class of an object.
    pub class: Option<String>,
}

/// Reads hessian2 values into JSON, one stream from its start (class definitions
/// and references are per stream).
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    draft: bool,
    classes: Vec<(String, Vec<String>)>,
    /// Where each list, map and object starts and (once read) ends: a reference is
    /// decoded again from its bytes, so that nothing is copied until asked for.
    refs: Vec<(usize, Option<usize>)>,
    /// Where the value being read started (its first type code).
    start: usize,
    /// Values still allowed: references can repeat a value many times over, so
    /// their output is bounded (a few per input byte), not only their input.
    budget: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder of `buf`; `draft` for hessian.js 1.x's dialect.
    pub fn new(buf: &'a [u8], draft: bool) -> Self {
        Self {
            buf,
            pos: 0,
            draft,
            classes: Vec::new(),
            refs: Vec::new(),
            start: 0,
            budget: buf.len().saturating_mul(4).saturating_add(1024),
        }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn peek(&self) -> Result<u8> {
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

    pub(super) fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, b| a << 8 | u64::from(*b)))
    }

    /// Reads one value.
    ///
    /// # Errors
    /// Malformed or truncated input, or nesting deeper than [`MAX_DEPTH`].
    pub fn read(&mut self) -> Result<Decoded> {
        let mut class = None;
        let value = self.value(0, &mut class)?;
        Ok(Decoded { value, class })
    }

    /// Reads an object, its fields each with their own class (an exception inside a
    /// response object is told by it): the class name and the fields in order.
    ///
    /// # Errors
    /// The next value is not an object; malformed input.
    pub fn read_object(&mut self) -> Result<(String, Vec<(String, Decoded)>)> {
        loop {
            self.start = self.pos;
            let code = self.byte()?;
            let def = match code {
                b'C' if !self.draft => {
                    self.class_def()?;
                    continue;
                }
                b'O' if self.draft => {
                    self.draft_class_def()?;
                    continue;
                }
                b'O' if !self.draft => self.count()?,
                b'o' if self.draft => self.count()?,
                0x60..=0x6f if !self.draft => usize::from(code - 0x60),
                found => {
                    return Err(HessianError::Unexpected {
                        expected: "object",
                        found,
                    })
                }
            };
            let (name, fields) = self
                .classes
                .get(def)
                .cloned()
                .ok_or(HessianError::NoClassDef(def as i64))?;
            let at = self.slot();
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let mut class = None;
                let value = self.value(1, &mut class)?;
                out.push((f, Decoded { value, class }));
            }
            self.filled(at);
            return Ok((name, out));
        }
    }

    /// The value reference `n` names, decoded again from its bytes; a reference to a
    /// value still being read (a cycle) is null.
    fn reference(&mut self, n: u64, depth: usize) -> Result<Value> {
        let (start, end) = usize::try_from(n)
            .ok()
            .and_then(|i| self.refs.get(i).copied())
            .ok_or(HessianError::BadLength)?;
        if end.is_none() {
            return Ok(Value::Null);
        }
        let (pos, classes, refs) = (self.pos, self.classes.len(), self.refs.len());
        self.pos = start;
        let v = self.value(depth + 1, &mut None);
        self.pos = pos;
        self.classes.truncate(classes);
        self.refs.truncate(refs);
        v
    }

    fn value(&mut self, depth: usize, class: &mut Option<String>) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(HessianError::TooDeep);
        }
        // Over budget reads as too deep: the output would be out of all proportion
        // to the input.
        self.budget = self.budget.checked_sub(1).ok_or(HessianError::TooDeep)?;
        loop {
            self.start = self.pos;
            let code = self.byte()?;
            if let Some(i) = self.int_value(code)? {
                return Ok(Value::from(i));
            }
            if let Some(f) = self.double_value(code)? {
                return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
            }
            return Ok(match code {
                b'N' => Value::Null,
                b'T' => Value::Bool(true),
                b'F' => Value::Bool(false),
                0x00..=0x1f | 0x30..=0x33 | b'S' => Value::String(self.string_after(code)?),
                b'R' if !self.draft => Value::String(self.string_after(code)?),
                b's' if self.draft => Value::String(self.string_after(code)?),
                0x20..=0x2f | b'B' => self.binary_after(code)?,
                0x34..=0x37 | b'A' if !self.draft => self.binary_after(code)?,
                b'b' if self.draft => self.binary_after(code)?,
                b'J' if !self.draft => Value::from(self.be(8)? as i64),
                b'd' if self.draft => Value::from(self.be(8)? as i64),
                0x4b if !self.draft => Value::from((self.be(4)? as u32 as i32 as i64) * 60_000),
                b'C' if !self.draft => {
                    self.class_def()?;
                    continue;
                }
                b'O' if self.draft => {
                    self.draft_class_def()?;
                    continue;
                }
                b'O' if !self.draft => {
                    let def = self.count()?;
                    self.object(def, depth, class)?
                }
                0x60..=0x6f if !self.draft => {
                    self.object(usize::from(code - 0x60), depth, class)?
                }
                b'o' if self.draft => {
                    let def = self.count()?;
                    self.object(def, depth, class)?
                }
                b'Q' if !self.draft => {
                    let n = self.count()?;
                    self.reference(n as u64, depth)?
                }
                0x4a if self.draft => {
                    let n = u64::from(self.byte()?);
                    self.reference(n, depth)?
                }
                0x4b if self.draft => {
                    let n = self.be(2)?;
                    self.reference(n, depth)?
                }
                b'R' if self.draft => {
                    let n = self.be(4)?;
                    self.reference(n, depth)?
                }
                b'H' => self.map(depth, class)?,
                b'M' => {
                    self.skip_type()?;
                    self.map(depth, class)?
                }
                b'V' if self.draft => {
                    self.skip_type()?;
                    match self.peek()? {
                        b'n' => drop(self.take(2)?),
                        b'l' => drop(self.take(5)?),
                        _ => {}
                    }
                    self.list_until_end(depth)?
                }
                b'v' if self.draft => {
                    self.count()?;
                    let n = self.count()?;
                    self.list_n(n, depth)?
                }
                b'V' => {
                    self.skip_type()?;
                    let n = self.count()?;
                    self.list_n(n, depth)?
                }
                b'U' if !self.draft => {
                    self.skip_type()?;
                    self.list_until_end(depth)?
                }
                b'W' if !self.draft => self.list_until_end(depth)?,
                b'X' if !self.draft => {
                    let n = self.count()?;
                    self.list_n(n, depth)?
                }
                0x70..=0x77 if !self.draft => {
                    self.skip_type()?;
                    self.list_n(usize::from(code - 0x70), depth)?
                }
                0x78..=0x7f if !self.draft => self.list_n(usize::from(code - 0x78), depth)?,
                _ => return Err(HessianError::BadCode(code)),
            });
        }
    }

    fn end(&self) -> u8 {
        if self.draft {
            b'z'
        } else {
            b'Z'
        }
    }

    /// Numbers the list, map or object that started at `self.start`.
    fn slot(&mut self) -> usize {
        self.refs.push((self.start, None));
        self.refs.len() - 1
    }

    /// The value numbered `at` has been read.
    fn filled(&mut self, at: usize) {
        if let Some(r) = self.refs.get_mut(at) {
            r.1 = Some(self.pos);
        }
    }

    fn list_n(&mut self, n: usize, depth: usize) -> Result<Value> {
        let at = self.slot();
        // Every value takes at least one byte: a count past the input fails there.
        let mut items = Vec::with_capacity(n.min(self.buf.len().saturating_sub(self.pos)));
        for _ in 0..n {
            items.push(self.value(depth + 1, &mut None)?);
        }
        if self.draft && self.peek() == Ok(b'z') {
            self.pos += 1;
        }
        self.filled(at);
        Ok(Value::Array(items))
    }

    fn list_until_end(&mut self, depth: usize) -> Result<Value> {
        let at = self.slot();
        let mut items = Vec::new();
        while self.peek()? != self.end() {
            items.push(self.value(depth + 1, &mut None)?);
        }
        self.pos += 1;
        self.filled(at);
        Ok(Value::Array(items))
    }

    fn map(&mut self, depth: usize, _class: &mut Option<String>) -> Result<Value> {
        let at = self.slot();
        let mut map = Map::new();
        while self.peek()? != self.end() {
            let key = match self.value(depth + 1, &mut None)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value = self.value(depth + 1, &mut None)?;
            map.insert(key, value);
        }
        self.pos += 1;
        self.filled(at);
        Ok(Value::Object(map))
    }

    fn class_def(&mut self) -> Result<()> {
        let name = self.string()?;
        let n = self.count()?;
        let mut fields = Vec::new();
        for _ in 0..n {
            fields.push(self.string()?);
        }
        self.classes.push((name, fields));
        Ok(())
    }

    fn draft_class_def(&mut self) -> Result<()> {
        let n = self.count()?;
        let mut units = Vec::new();
        self.utf16_units(n, &mut units)?;
        let count = self.count()?;
        let mut fields = Vec::new();
        for _ in 0..count {
            fields.push(self.string()?);
        }
        self.classes
            .push((String::from_utf16_lossy(&units), fields));
        Ok(())
    }

    fn object(&mut self, def: usize, depth: usize, class: &mut Option<String>) -> Result<Value> {
        let (name, fields) = self
            .classes
            .get(def)
            .cloned()
            .ok_or(HessianError::NoClassDef(def as i64))?;
        let at = self.slot();
        let mut map = Map::new();
        for f in fields {
            let v = self.value(depth + 1, &mut None)?;
            map.insert(f, v);
        }
        *class = Some(name);
        self.filled(at);
        Ok(Value::Object(map))
    }
}
