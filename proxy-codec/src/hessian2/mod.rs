//! A hessian2 reader that can skip any value, and the few writers the codecs need.
//!
//! The proxy never deserializes a payload: it reads the handful of leading strings a
//! protocol puts first (service, method), skips the arguments whatever their type, and
//! reads the string pairs of an attachments map. [`Reader::skip_value`] walks every
//! hessian 2.0 type code (compact ints, longs and doubles, chunked strings and binary,
//! typed and untyped lists and maps, class definitions, objects and references) without
//! allocating for values, with a nesting-depth limit so that hostile input cannot
//! exhaust the stack.
//!
//! ```
//! use proxy_codec::hessian2::{Reader, Writer};
//!
//! let mut w = Writer::new();
//! w.string("com.example.Hello");
//! w.int(42);
//! w.list_begin();
//! w.string("skipped");
//! w.list_end();
//! w.string("after");
//! let bytes = w.into_bytes();
//!
//! let mut r = Reader::new(&bytes);
//! assert_eq!(r.read_string().unwrap().as_deref(), Some("com.example.Hello"));
//! r.skip_value().unwrap(); // 42
//! r.skip_value().unwrap(); // the list
//! assert_eq!(r.read_string().unwrap().as_deref(), Some("after"));
//! assert!(r.is_empty());
//! ```

mod draft;
mod error;
mod maps;
mod reader;
mod skip;
#[cfg(test)]
mod tests;
mod writer;

pub use error::HessianError;
pub use maps::MapEntry;
pub use reader::{Reader, MAX_DEPTH};
pub use writer::Writer;
