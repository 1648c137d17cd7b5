//! The RPC answer (Bolt `SofaResponse`, Dubbo response body) read into an
//! [`Answer`]: a value, a remote exception, or a protocol error.

use serde_json::Value;

use super::decode::{Decoded, Decoder};
use crate::{
    bolt::status as bolt_status,
    dubbo::{
        status as dubbo_status, RESPONSE_NULL_VALUE, RESPONSE_NULL_VALUE_WITH_ATTACHMENTS,
        RESPONSE_VALUE, RESPONSE_VALUE_WITH_ATTACHMENTS, RESPONSE_WITH_EXCEPTION,
        RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS,
    },
    hessian2::HessianError,
};

/// What an RPC call answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Answer {
    /// The method returned this value (null for void or null).
    Value(Value),
    /// The method threw: the exception's message and class, when known. Besides a
    /// thrown value in the response body, a Bolt `SERVER_EXCEPTION` or a Dubbo
    /// `SERVICE_ERROR`/`SERVER_ERROR` status with its error text is one: that is how
    /// sofa-rpc-node answers an exception over either protocol.
    Exception {
        /// The message (`detailMessage`, `errorMsg`, or the error string).
        message: String,
        /// The exception's class.
        class: Option<String>,
    },
    /// The server answered with a protocol error status (no such service, busy,
    /// timeout, ...), and its message.
    Status {
        /// The Bolt or Dubbo status code.
        status: u16,
        /// The error text the server sent, if readable.
        message: String,
    },
}

/// A hessian2 stream's dialect, by its first byte: hessian.js 1.x starts an object
/// with a draft class definition (`O`), Java and hessian.js 2.x with `C`.
fn decoder(content: &[u8]) -> Decoder<'_> {
    Decoder::new(content, content.first() == Some(&b'O'))
}

/// The message of an exception object or error string.
fn message_of(d: &Decoded) -> String {
    match &d.value {
        Value::String(s) => s.clone(),
        Value::Object(m) => ["detailMessage", "message", "errorMsg"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
            .map_or_else(|| d.value.to_string(), str::to_owned),
        other => other.to_string(),
    }
}

/// Whether a returned object is a thrown `java.lang.Throwable`: every one carries a
/// `detailMessage` field, and is named like one or carries its `stackTrace` (a
/// value object merely called `...Error` is not).
fn is_exception(d: &Decoded) -> bool {
    let named = d.class.as_deref().is_some_and(|c| {
        c.ends_with("Exception") || c.ends_with("Error") || c.ends_with("Throwable")
    });
    d.value.get("detailMessage").is_some() && (named || d.value.get("stackTrace").is_some())
}

/// The error text of a failed call's payload (a hessian2 string or exception), or
/// a generic text when it cannot be read.
fn status_message(content: &[u8], protocol: &str, status: u16) -> String {
    decoder(content)
        .read()
        .ok()
        .map(|d| message_of(&d))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{protocol} status {status}"))
}

/// Reads a Bolt answer: `status` from the frame, `content` its payload.
///
/// # Errors
/// A success status whose content is not a readable `SofaResponse`.
pub fn bolt(status: u16, content: &[u8]) -> Result<Answer, HessianError> {
    if status == bolt_status::SERVER_EXCEPTION {
        // sofa-rpc-node answers an exception the method threw this way.
        return Ok(Answer::Exception {
            message: status_message(content, "bolt", status),
            class: None,
        });
    }
    if status != bolt_status::SUCCESS {
        return Ok(Answer::Status {
            status,
            message: status_message(content, "bolt", status),
        });
    }
    let starts_object = matches!(content.first(), Some(b'O' | b'C' | 0x60..=0x6f));
    if !starts_object {
        // A bare string (or exception) is how hessian.js servers answer some failures.
        let d = decoder(content).read()?;
        return Ok(Answer::Exception {
            message: message_of(&d),
            class: d.class,
        });
    }
    let (_, fields) = decoder(content).read_object()?;
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, d)| d);
    if field("isError").and_then(|d| d.value.as_bool()) == Some(true) {
        let message = field("errorMsg")
            .and_then(|d| d.value.as_str())
            .unwrap_or("remote error")
            .to_owned();
        return Ok(Answer::Exception {
            message,
            class: None,
        });
    }
    match field("appResponse") {
        Some(d) if is_exception(d) => Ok(Answer::Exception {
            message: message_of(d),
            class: d.class.clone(),
        }),
        Some(d) => Ok(Answer::Value(d.value.clone())),
        None => Ok(Answer::Value(Value::Null)),
    }
}

/// Reads a Dubbo answer: `status` from the frame header, `body` its payload.
///
/// # Errors
/// An OK status whose body is not a readable response.
pub fn dubbo(status: u8, body: &[u8]) -> Result<Answer, HessianError> {
    if matches!(
        status,
        dubbo_status::SERVICE_ERROR | dubbo_status::SERVER_ERROR
    ) {
        // The service threw outside the response body (how Node servers answer).
        return Ok(Answer::Exception {
            message: status_message(body, "dubbo", u16::from(status)),
            class: None,
        });
    }
    if status != dubbo_status::OK {
        return Ok(Answer::Status {
            status: u16::from(status),
            message: status_message(body, "dubbo", u16::from(status)),
        });
    }
    let mut r = Decoder::new(body, false);
    let flag = r.read()?.value.as_i64().ok_or(HessianError::Unexpected {
        expected: "response flag",
        found: body.first().copied().unwrap_or(0),
    })?;
    match i32::try_from(flag).unwrap_or(-1) {
        RESPONSE_VALUE | RESPONSE_VALUE_WITH_ATTACHMENTS => Ok(Answer::Value(r.read()?.value)),
        RESPONSE_NULL_VALUE | RESPONSE_NULL_VALUE_WITH_ATTACHMENTS => {
            Ok(Answer::Value(Value::Null))
        }
        RESPONSE_WITH_EXCEPTION | RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS => {
            let d = r.read()?;
            Ok(Answer::Exception {
                message: message_of(&d),
                class: d.class,
            })
        }
        _ => Err(HessianError::BadCode(body.first().copied().unwrap_or(0))),
    }
}
