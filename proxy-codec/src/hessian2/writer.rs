//! Writing hessian2 values: what the codecs send themselves (error strings, heartbeat
//! nulls) and what tests build frames from.

/// Longest string chunk, in UTF-16 code units.
const CHUNK_UNITS: usize = 0x8000;
/// Longest binary chunk, in bytes.
const CHUNK_BYTES: usize = 0x8000;

/// Appends hessian2 values to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends raw, already encoded bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A null.
    pub fn null(&mut self) -> &mut Self {
        self.buf.push(b'N');
        self
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { b'T' } else { b'F' });
        self
    }

    /// An int, in its most compact encoding.
    pub fn int(&mut self, v: i32) -> &mut Self {
        match v {
            -16..=47 => self.buf.push((0x90 + v) as u8),
            -2048..=2047 => self
                .buf
                .extend_from_slice(&[(0xc8 + (v >> 8)) as u8, v as u8]),
            -262_144..=262_143 => {
                self.buf
                    .extend_from_slice(&[(0xd4 + (v >> 16)) as u8, (v >> 8) as u8, v as u8])
            }
            _ => {
                self.buf.push(b'I');
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
        }
        self
    }

    /// A long, in its most compact encoding.
    pub fn long(&mut self, v: i64) -> &mut Self {
        match v {
            -8..=15 => self.buf.push((0xe0 + v) as u8),
            -2048..=2047 => self
                .buf
                .extend_from_slice(&[(0xf8 + (v >> 8)) as u8, v as u8]),
            -262_144..=262_143 => {
                self.buf
                    .extend_from_slice(&[(0x3c + (v >> 16)) as u8, (v >> 8) as u8, v as u8])
            }
            _ if i32::try_from(v).is_ok() => {
                self.buf.push(b'Y');
                self.buf.extend_from_slice(&(v as i32).to_be_bytes());
            }
            _ => {
                self.buf.push(b'L');
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
        }
        self
    }

    /// A string, chunked when long; characters outside the basic plane are written as
    /// surrogate pairs of 3-byte sequences, as Java's hessian reads them.
    pub fn string(&mut self, s: &str) -> &mut Self {
        let mut chunk = Vec::with_capacity(s.len().min(CHUNK_UNITS * 3));
        let mut units = 0usize;
        let mut pair = [0u16; 2];
        for ch in s.chars() {
            let encoded = ch.encode_utf16(&mut pair);
            if units + encoded.len() > CHUNK_UNITS {
                self.buf.push(b'R');
                self.buf.extend_from_slice(&(units as u16).to_be_bytes());
                self.buf.append(&mut chunk);
                units = 0;
            }
            for unit in encoded.iter() {
                push_unit(&mut chunk, *unit);
            }
            units += encoded.len();
        }
        match units {
            0..=31 => self.buf.push(units as u8),
            32..=1023 => self
                .buf
                .extend_from_slice(&[0x30 + (units >> 8) as u8, units as u8]),
            _ => {
                self.buf.push(b'S');
                self.buf.extend_from_slice(&(units as u16).to_be_bytes());
            }
        }
        self.buf.append(&mut chunk);
        self
    }

    /// Binary data, chunked when long.
    pub fn binary(&mut self, mut b: &[u8]) -> &mut Self {
        while b.len() > CHUNK_BYTES {
            self.buf.push(b'A');
            self.buf
                .extend_from_slice(&(CHUNK_BYTES as u16).to_be_bytes());
            self.buf.extend_from_slice(&b[..CHUNK_BYTES]);
            b = &b[CHUNK_BYTES..];
        }
        match b.len() {
            0..=15 => self.buf.push(0x20 + b.len() as u8),
            16..=1023 => self
                .buf
                .extend_from_slice(&[0x34 + (b.len() >> 8) as u8, b.len() as u8]),
            n => {
                self.buf.push(b'B');
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        self.buf.extend_from_slice(b);
        self
    }

    /// Starts a variable-length untyped list; end it with [`Writer::list_end`].
    pub fn list_begin(&mut self) -> &mut Self {
        self.buf.push(b'W');
        self
    }

    /// Ends a variable-length list.
    pub fn list_end(&mut self) -> &mut Self {
        self.buf.push(b'Z');
        self
    }

    /// Starts an untyped map; end it with [`Writer::map_end`].
    pub fn map_begin(&mut self) -> &mut Self {
        self.buf.push(b'H');
        self
    }

    /// Ends a map.
    pub fn map_end(&mut self) -> &mut Self {
        self.buf.push(b'Z');
        self
    }

    /// A map of string pairs.
    pub fn string_map<'s>(
        &mut self,
        entries: impl IntoIterator<Item = (&'s str, &'s str)>,
    ) -> &mut Self {
        self.map_begin();
        for (k, v) in entries {
            self.string(k);
            self.string(v);
        }
        self.map_end()
    }

    /// A class definition; objects of it follow with [`Writer::object`].
    pub fn class_def(&mut self, name: &str, fields: &[&str]) -> &mut Self {
        self.buf.push(b'C');
        self.string(name);
        self.int(fields.len() as i32);
        for f in fields {
            self.string(f);
        }
        self
    }

    /// Starts an object of the class definition numbered `def`; its field values follow.
    pub fn object(&mut self, def: u32) -> &mut Self {
        if def < 16 {
            self.buf.push(0x60 + def as u8);
        } else {
            self.buf.push(b'O');
            self.int(def as i32);
        }
        self
    }
}

fn push_unit(out: &mut Vec<u8>, u: u16) {
    let u = u32::from(u);
    match u {
        0..=0x7f => out.push(u as u8),
        0x80..=0x7ff => out.extend_from_slice(&[0xc0 | (u >> 6) as u8, 0x80 | (u & 0x3f) as u8]),
        _ => out.extend_from_slice(&[
            0xe0 | (u >> 12) as u8,
            0x80 | ((u >> 6) & 0x3f) as u8,
            0x80 | (u & 0x3f) as u8,
        ]),
    }
}
