//! What framing and connection handling need of a head's header fields, noted while
//! the header map is built: one comparison of each field's name against the few
//! names that matter, instead of one hashed lookup per name afterwards.

use http::{header, HeaderName, HeaderValue};

use super::HeadError;

/// The tokens of the `Connection` fields that decide keep-alive and upgrades.
#[derive(Default)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
}

impl ConnectionTokens {
    /// Notes the tokens of one `Connection` field value.
    fn add(&mut self, value: &HeaderValue) {
        for tok in value.as_bytes().split(|&b| b == b',') {
            let tok = tok.trim_ascii();
            if tok.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }
}

/// What a field's name is to framing and connection handling: one of the few names
/// that matter, or any other. Told once per field, as its name is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    ContentLength,
    Connection,
    Host,
    TransferEncoding,
    Upgrade,
    Expect,
    Other,
}

impl Role {
    /// The role of a name that was not matched by its spelling (see
    /// [`super::common_name`]).
    pub(super) fn of(name: &HeaderName) -> Self {
        if *name == header::CONTENT_LENGTH {
            Role::ContentLength
        } else if *name == header::CONNECTION {
            Role::Connection
        } else if *name == header::HOST {
            Role::Host
        } else if *name == header::TRANSFER_ENCODING {
            Role::TransferEncoding
        } else if *name == header::UPGRADE {
            Role::Upgrade
        } else if *name == header::EXPECT {
            Role::Expect
        } else {
            Role::Other
        }
    }
}

/// The facts of a head's fields, in the order the fields came.
pub(crate) struct HeadFacts {
    pub(crate) connection: ConnectionTokens,
    /// Whether any `Transfer-Encoding` field is there.
    pub(crate) transfer_encoding: bool,
    /// Whether any `Upgrade` field is there.
    pub(crate) upgrade: bool,
    /// Whether the first `Expect` field is `100-continue`.
    pub(crate) expect_continue: bool,
    /// `Host` fields seen, counted up to 2.
    pub(crate) hosts: u8,
    /// Whether every `Host` value is `uri-host [ ":" port ]`.
    pub(crate) host_valid: bool,
    /// Whether a field name has an `_` (requests only; see [`crate::http1::names`]).
    pub(crate) underscore: bool,
    /// The `Content-Length`, if any: repeated values must agree, and the first
    /// malformed one makes it an error.
    pub(crate) content_length: Result<Option<u64>, HeadError>,
    expect_seen: bool,
}

impl HeadFacts {
    pub(super) fn new() -> Self {
        Self {
            connection: ConnectionTokens::default(),
            transfer_encoding: false,
            upgrade: false,
            expect_continue: false,
            hosts: 0,
            host_valid: true,
            underscore: false,
            content_length: Ok(None),
            expect_seen: false,
        }
    }

    /// Notes one field, if its name (of `role`) is one of those that matter.
    #[inline]
    pub(super) fn note(&mut self, role: Role, value: &HeaderValue) {
        match role {
            Role::Other => {}
            Role::ContentLength => self.add_content_length(value),
            Role::Connection => self.connection.add(value),
            Role::Host => {
                self.hosts = self.hosts.saturating_add(1).min(2);
                self.host_valid &= super::host::valid_host(value.as_bytes());
            }
            Role::TransferEncoding => self.transfer_encoding = true,
            Role::Upgrade => self.upgrade = true,
            Role::Expect if !self.expect_seen => {
                self.expect_seen = true;
                self.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            Role::Expect => {}
        }
    }

    fn add_content_length(&mut self, value: &HeaderValue) {
        let Ok(mut found) = self.content_length else {
            return;
        };
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                self.content_length = Err(HeadError::BadContentLength);
                return;
            }
            // Leading zeros are digits like any (`1*DIGIT`); 19 significant digits
            // fit in a u64 without overflow.
            let zeros = part.iter().take_while(|&&b| b == b'0').count();
            let significant = &part[zeros..];
            if significant.len() > 19 {
                self.content_length = Err(HeadError::BadContentLength);
                return;
            }
            let n = significant
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                self.content_length = Err(HeadError::BadContentLength);
                return;
            }
            found = Some(n);
        }
        self.content_length = Ok(found);
    }
}
