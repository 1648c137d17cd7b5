//! JSON arguments to hessian2, checked against the [`Signature`], and the Bolt
//! `SofaRequest` content or Dubbo invocation body around them.

use serde_json::Value;

pub use super::error::{ArgumentError, ArgumentRef};
use super::{
    config::{Dialect, JavaType, Signature, TargetProtocol},
    error::kind,
};
use crate::{bolt::SOFA_REQUEST, hessian2::Writer};

/// How deep JSON values (lists, maps) may nest inside an argument.
pub const MAX_JSON_DEPTH: usize = 64;

/// Picks the argument values out of a JSON body: an array in order, or an object
/// keyed by the argument names.
///
/// # Errors
/// Not JSON, wrong arity, a missing or unknown name.
pub fn arguments(sig: &Signature, body: &[u8]) -> Result<Vec<Value>, ArgumentError> {
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    let value: Value = if trimmed && sig.arguments.is_empty() {
        Value::Array(Vec::new())
    } else {
        serde_json::from_slice(body).map_err(|e| ArgumentError::NotJson(e.to_string()))?
    };
    let named = sig.arguments.first().is_some_and(|(n, _)| n.is_some());
    match value {
        Value::Array(values) if values.len() == sig.arguments.len() => Ok(values),
        Value::Array(values) => Err(ArgumentError::Arity {
            expected: sig.arguments.len(),
            got: values.len(),
        }),
        Value::Object(mut map) if named => {
            let mut out = Vec::with_capacity(sig.arguments.len());
            for (name, _) in &sig.arguments {
                let name = name.as_deref().unwrap_or_default();
                match map.remove(name) {
                    Some(v) => out.push(v),
                    None => {
                        return Err(ArgumentError::Name {
                            argument: ArgumentRef::Name(name.to_owned()),
                            reason: "missing",
                        })
                    }
                }
            }
            match map.into_iter().next() {
                Some((extra, _)) => Err(ArgumentError::Name {
                    argument: ArgumentRef::Name(extra),
                    reason: "unknown",
                }),
                None => Ok(out),
            }
        }
        _ => Err(ArgumentError::NotArguments { named }),
    }
}

/// A hessian2 writer of one stream in one dialect, remembering its class definitions.
struct Out {
    w: Writer,
    dialect: Dialect,
    classes: Vec<String>,
}

impl Out {
    fn new(dialect: Dialect) -> Self {
        Self {
            w: Writer::new(),
            dialect,
            classes: Vec::new(),
        }
    }

    fn draft(&self) -> bool {
        self.dialect == Dialect::Draft
    }

    fn string(&mut self, s: &str) {
        // The writer chunks with `R` past 32k UTF-16 units; the draft dialect's chunk
        // code is `s`: split such strings by hand.
        if self.draft() && s.encode_utf16().count() > 0x7fff {
            let mut chunk = String::new();
            let mut units = 0;
            for ch in s.chars() {
                if units + ch.len_utf16() > 0x7fff {
                    let mut w = Writer::new();
                    w.string(&chunk);
                    // `S` then the length: rewrite the final-chunk code as a draft chunk.
                    let mut bytes = w.into_bytes();
                    if let Some(first) = bytes.first_mut() {
                        *first = b's';
                    }
                    self.w.raw(&bytes);
                    chunk.clear();
                    units = 0;
                }
                chunk.push(ch);
                units += ch.len_utf16();
            }
            self.w.string(&chunk);
        } else {
            self.w.string(s);
        }
    }

    fn long(&mut self, v: i64) {
        // `Y` (a long in 32 bits) is final-spec only.
        if self.draft() && !(-262_144..=262_143).contains(&v) {
            self.w.raw(b"L").raw(&v.to_be_bytes());
        } else {
            self.w.long(v);
        }
    }

    fn double(&mut self, v: f64) {
        self.w.raw(b"D").raw(&v.to_be_bytes());
    }

    fn list_begin(&mut self, typ: Option<&str>, len: usize) {
        if self.draft() {
            self.w.raw(b"V");
            if let Some(t) = typ {
                self.draft_type(t);
            }
            match u8::try_from(len) {
                Ok(n) => self.w.raw(&[b'n', n]),
                Err(_) => self
                    .w
                    .raw(b"l")
                    .raw(&(i32::try_from(len).unwrap_or(i32::MAX)).to_be_bytes()),
            };
        } else {
            let len = i32::try_from(len).unwrap_or(i32::MAX);
            match typ {
                Some(t) => {
                    self.w.raw(b"V");
                    self.w.string(t);
                    self.w.int(len);
                }
                None => {
                    self.w.raw(b"X");
                    self.w.int(len);
                }
            }
        }
    }

    fn list_end(&mut self) {
        if self.draft() {
            self.w.raw(b"z");
        }
    }

    fn map_begin(&mut self) {
        if self.draft() {
            self.w.raw(b"M");
        } else {
            self.w.raw(b"H");
        }
    }

    fn map_end(&mut self) {
        self.w.raw(if self.draft() { b"z" } else { b"Z" });
    }

    fn draft_type(&mut self, t: &str) {
        let units = t.encode_utf16().count();
        self.w
            .raw(b"t")
            .raw(&(u16::try_from(units).unwrap_or(u16::MAX)).to_be_bytes());
        // Raw (modified) UTF-8 characters; the string writer's bytes minus its header.
        let mut w = Writer::new();
        w.string(t);
        let bytes = w.into_bytes();
        let header = match units {
            0..=31 => 1,
            32..=1023 => 2,
            _ => 3,
        };
        self.w.raw(bytes.get(header..).unwrap_or_default());
    }

    /// Starts an object of `class` with `fields`, defining the class on first use.
    fn object(&mut self, class: &str, fields: &[&str]) {
        let def = match self.classes.iter().position(|c| c == class) {
            Some(i) => i,
            None => {
                if self.draft() {
                    let len = i32::try_from(class.encode_utf16().count()).unwrap_or(i32::MAX);
                    self.w.raw(b"O");
                    self.w.int(len);
                    self.w.raw(class.as_bytes());
                    self.w.int(i32::try_from(fields.len()).unwrap_or(i32::MAX));
                    for f in fields {
                        self.w.string(f);
                    }
                } else {
                    self.w.class_def(class, fields);
                }
                self.classes.push(class.to_owned());
                self.classes.len() - 1
            }
        };
        let def = u32::try_from(def).unwrap_or(u32::MAX);
        if self.draft() {
            self.w.raw(b"o");
            self.w.int(i32::try_from(def).unwrap_or(i32::MAX));
        } else {
            self.w.object(def);
        }
    }

    /// Any JSON value, typed by its own shape.
    fn any(&mut self, v: &Value, depth: usize) -> Result<(), ()> {
        if depth > MAX_JSON_DEPTH {
            return Err(());
        }
        match v {
            Value::Null => drop(self.w.null()),
            Value::Bool(b) => drop(self.w.bool(*b)),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => match i32::try_from(i) {
                    Ok(i) => drop(self.w.int(i)),
                    Err(_) => self.long(i),
                },
                (None, Some(f)) => self.double(f),
                (None, None) => self.double(f64::NAN),
            },
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.list_begin(None, items.len());
                for item in items {
                    self.any(item, depth + 1)?;
                }
                self.list_end();
            }
            Value::Object(map) => {
                self.map_begin();
                for (k, item) in map {
                    self.string(k);
                    self.any(item, depth + 1)?;
                }
                self.map_end();
            }
        }
        Ok(())
    }

    /// `v` as `t`; on a mismatch, the field path within the argument and what `v` was.
    fn typed(
        &mut self,
        t: &JavaType,
        v: &Value,
        field: &mut String,
        depth: usize,
    ) -> Result<(), Mismatch> {
        if depth > MAX_JSON_DEPTH {
            return Err(Mismatch::TooDeep);
        }
        let bad = || Mismatch::Type {
            expected: t.java_name().to_owned(),
            got: kind(v),
        };
        if v.is_null() {
            return if t.nullable() {
                self.w.null();
                Ok(())
            } else {
                Err(bad())
            };
        }
        match t {
            JavaType::String => self.string(v.as_str().ok_or_else(bad)?),
            JavaType::Int { .. } => {
                let i = v.as_i64().and_then(|i| i32::try_from(i).ok());
                self.w.int(i.ok_or_else(bad)?);
            }
            JavaType::Long { .. } => self.long(v.as_i64().ok_or_else(bad)?),
            JavaType::Double { .. } => self.double(v.as_f64().ok_or_else(bad)?),
            JavaType::Boolean { .. } => drop(self.w.bool(v.as_bool().ok_or_else(bad)?)),
            JavaType::List if v.is_array() => self.any(v, depth).map_err(|()| Mismatch::TooDeep)?,
            JavaType::Map if v.is_object() => self.any(v, depth).map_err(|()| Mismatch::TooDeep)?,
            JavaType::List | JavaType::Map => return Err(bad()),
            JavaType::Object => self.any(v, depth).map_err(|()| Mismatch::TooDeep)?,
            JavaType::Class(class) => {
                let map = v.as_object().ok_or_else(bad)?;
                if let Some(unknown) = map
                    .keys()
                    .find(|k| !class.fields.iter().any(|(n, _)| n == *k))
                {
                    field.push('.');
                    field.push_str(unknown);
                    return Err(Mismatch::Unknown);
                }
                let names: Vec<&str> = class.fields.iter().map(|(n, _)| n.as_str()).collect();
                self.object(&class.name, &names);
                for (name, ft) in &class.fields {
                    let len = field.len();
                    field.push('.');
                    field.push_str(name);
                    self.typed(ft, map.get(name).unwrap_or(&Value::Null), field, depth + 1)?;
                    field.truncate(len);
                }
            }
        }
        Ok(())
    }

    fn args(&mut self, sig: &Signature, values: &[Value]) -> Result<(), ArgumentError> {
        for (i, ((name, t), v)) in sig.arguments.iter().zip(values).enumerate() {
            let argument = || match name {
                Some(n) => ArgumentRef::Name(n.clone()),
                None => ArgumentRef::Index(i),
            };
            let mut field = String::new();
            match self.typed(t, v, &mut field, 0) {
                Ok(()) => {}
                Err(Mismatch::Type { expected, got }) => {
                    return Err(ArgumentError::Type {
                        argument: argument(),
                        field,
                        expected,
                        got,
                    })
                }
                Err(Mismatch::Unknown) => {
                    return Err(ArgumentError::Type {
                        argument: argument(),
                        field,
                        expected: "no such field".into(),
                        got: "a value",
                    })
                }
                Err(Mismatch::TooDeep) => {
                    return Err(ArgumentError::TooDeep {
                        argument: argument(),
                    })
                }
            }
        }
        Ok(())
    }
}

enum Mismatch {
    Type { expected: String, got: &'static str },
    Unknown,
    TooDeep,
}

/// The payload of the call: Bolt's `SofaRequest` content or Dubbo's invocation body,
/// with `values` (as [`arguments`] returns them) encoded against `sig`.
///
/// # Errors
/// A value that does not fit its type, naming the argument (and field).
pub fn encode_call(sig: &Signature, values: &[Value]) -> Result<Vec<u8>, ArgumentError> {
    if values.len() != sig.arguments.len() {
        return Err(ArgumentError::Arity {
            expected: sig.arguments.len(),
            got: values.len(),
        });
    }
    let mut out = Out::new(sig.dialect);
    match sig.protocol {
        TargetProtocol::Bolt => {
            out.object(
                SOFA_REQUEST,
                &[
                    "targetAppName",
                    "methodName",
                    "targetServiceUniqueName",
                    "requestProps",
                    "methodArgSigs",
                ],
            );
            out.w.null();
            out.string(&sig.method);
            out.string(&sig.bolt_unique_name());
            out.w.null();
            out.list_begin(Some("[string"), sig.arguments.len());
            for (_, t) in &sig.arguments {
                out.string(t.java_name());
            }
            out.list_end();
            out.args(sig, values)?;
        }
        TargetProtocol::Dubbo => {
            out.string("2.0.2");
            out.string(&sig.service);
            out.string(sig.version.as_deref().unwrap_or("0.0.0"));
            out.string(&sig.method);
            let desc: String = sig.arguments.iter().map(|(_, t)| t.descriptor()).collect();
            out.string(&desc);
            out.args(sig, values)?;
            out.map_begin();
            out.string("path");
            out.string(&sig.service);
            out.string("interface");
            out.string(&sig.service);
            if let Some(v) = &sig.version {
                out.string("version");
                out.string(v);
            }
            if let Some(g) = &sig.group {
                out.string("group");
                out.string(g);
            }
            out.map_end();
        }
    }
    Ok(out.w.into_bytes())
}
