//! The HTTP version of a start line, beyond what the parser accepts (`HTTP/1.0` and
//! `HTTP/1.1`): another major version is refused, a later minor version of 1 is read
//! as 1.1 (RFC 9110 section 2.5: a recipient SHOULD process a message of a higher
//! minor version as if it were in the highest minor version it implements).

/// Where the version sits in a start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartLine {
    /// `<method> <target> HTTP/x.y`: the last of three tokens.
    Request,
    /// `HTTP/x.y <code> <reason>`: the first token.
    Status,
}

/// The version token of the first line of `buf` as `(offset, major, minor)`, when it
/// is a well-formed `HTTP/<digit>.<digit>` in its place.
fn version_token(buf: &[u8], line: StartLine) -> Option<(usize, u8, u8)> {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let first = &buf[..end];
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let offset = match line {
        StartLine::Status => 0,
        StartLine::Request => {
            let mut spaces = first.iter().enumerate().filter(|(_, &b)| b == b' ');
            let (Some(_), Some((second, _)), None) = (spaces.next(), spaces.next(), spaces.next())
            else {
                return None;
            };
            second + 1
        }
    };
    let token = first.get(offset..)?;
    let token = match line {
        StartLine::Request => token,
        StartLine::Status => token.split(|&b| b == b' ').next()?,
    };
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some((offset, major - b'0', minor - b'0'))
        }
        _ => None,
    }
}

/// Whether the first line carries a well-formed version of another major than 1 (a 505
/// for a request), as opposed to a line that is not HTTP at all.
pub(super) fn is_other_major(buf: &[u8], line: StartLine) -> bool {
    matches!(version_token(buf, line), Some((_, major, _)) if major != 1)
}

/// Rewrites a well-formed `HTTP/1.<2-9>` in the first line of `buf` to `HTTP/1.1`, so
/// that the message is read as HTTP/1.1; returns whether it did. The message is
/// forwarded as HTTP/1.1 either way: a proxy sends its own version.
pub(super) fn settle_later_minor(buf: &mut [u8], line: StartLine) -> bool {
    match version_token(buf, line) {
        Some((offset, 1, minor)) if minor > 1 => {
            buf[offset + "HTTP/1.".len()] = b'1';
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_minor_versions_of_1_are_settled_as_1_1() {
        let mut buf = *b"GET / HTTP/1.2\r\nHost: x\r\n\r\n";
        assert!(settle_later_minor(&mut buf, StartLine::Request));
        assert!(buf.starts_with(b"GET / HTTP/1.1\r\n"));
        let mut buf = *b"HTTP/1.9 200 OK\r\n\r\n";
        assert!(settle_later_minor(&mut buf, StartLine::Status));
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
        // A line not yet ended is settled too.
        let mut buf = *b"GET / HTTP/1.3";
        assert!(settle_later_minor(&mut buf, StartLine::Request));
    }

    #[test]
    fn other_lines_are_left_alone() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET / HTTP/2.0\r\n",
            b"GET / HTTP/1.10\r\n",
            b"GET /a b HTTP/1.2\r\n",
            b"GET / http/1.2\r\n",
            b"GET / HTTP/1.x\r\n",
        ] {
            let mut buf = line.to_vec();
            assert!(
                !settle_later_minor(&mut buf, StartLine::Request),
                "{line:?}"
            );
            assert_eq!(buf, line);
        }
        let mut buf = b"HTTP/1.2x 200 OK\r\n".to_vec();
        assert!(!settle_later_minor(&mut buf, StartLine::Status));
    }

    #[test]
    fn other_major_versions_are_told_apart_from_garbage() {
        assert!(is_other_major(b"GET / HTTP/2.0\r\n", StartLine::Request));
        assert!(is_other_major(b"HTTP/3.0 200 OK\r\n", StartLine::Status));
        assert!(!is_other_major(b"GET / HTTP/1.2\r\n", StartLine::Request));
        assert!(!is_other_major(b"THIS IS NOT HTTP\r\n", StartLine::Request));
    }
}
