//! Why a JSON body does not fit the RPC signature, naming the argument: answered
//! 400 `bad_rpc_arguments`.

use std::fmt;

use serde_json::Value;

use super::encode::MAX_JSON_DEPTH;

/// Which argument a [`ArgumentError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentRef {
    /// By position (0-based).
    Index(usize),
    /// By name.
    Name(String),
}

impl fmt::Display for ArgumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(i) => write!(f, "{i}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// Why a JSON body does not fit the RPC signature: answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// The body is not JSON.
    #[error("request body is not json: {0}")]
    NotJson(String),
    /// The body is neither an array nor (for named arguments) an object.
    #[error("request body must be a json array of arguments{}", if *.named { " or an object of named arguments" } else { "" })]
    NotArguments {
        /// Whether the arguments are named.
        named: bool,
    },
    /// Too many or too few arguments.
    #[error("expected {expected} arguments, got {got}")]
    Arity {
        /// How many the method takes.
        expected: usize,
        /// How many the body holds.
        got: usize,
    },
    /// A named body lacks an argument or has an unknown one.
    #[error("{reason} argument {argument}")]
    Name {
        /// The argument.
        argument: ArgumentRef,
        /// `missing` or `unknown`.
        reason: &'static str,
    },
    /// A value does not fit its declared type.
    #[error("argument {argument}{field}: expected {expected}, got {got}")]
    Type {
        /// The argument.
        argument: ArgumentRef,
        /// The field path within it (`.address.city`, `[2]`), empty for the argument itself.
        field: String,
        /// The Java type expected.
        expected: String,
        /// What the JSON value was.
        got: &'static str,
    },
    /// Lists or maps nested deeper than [`MAX_JSON_DEPTH`].
    #[error("argument {argument}: values nested deeper than {MAX_JSON_DEPTH}")]
    TooDeep {
        /// The argument.
        argument: ArgumentRef,
    },
}

impl ArgumentError {
    /// The argument at fault, if one is.
    pub fn argument(&self) -> Option<&ArgumentRef> {
        match self {
            Self::Name { argument, .. }
            | Self::Type { argument, .. }
            | Self::TooDeep { argument } => Some(argument),
            _ => None,
        }
    }

    /// The Java type expected, for a type mismatch.
    pub fn expected(&self) -> Option<&str> {
        match self {
            Self::Type { expected, .. } => Some(expected),
            _ => None,
        }
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
