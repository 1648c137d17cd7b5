//! Why a hessian2 value could not be read.

use super::reader::MAX_DEPTH;

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

pub(super) type Result<T> = std::result::Result<T, HessianError>;
