//! Hex text for server IDs and keys in config.

use std::fmt;

/// Decodes an even number of hex digits (either case); the reason on failure.
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, &'static str> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits");
    }
    digits
        .chunks_exact(2)
        .map(|pair| Ok((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

fn nibble(d: u8) -> Result<u8, &'static str> {
    match d {
        b'0'..=b'9' => Ok(d - b'0'),
        b'a'..=b'f' => Ok(d - b'a' + 10),
        b'A'..=b'F' => Ok(d - b'A' + 10),
        _ => Err("a character that is not a hex digit"),
    }
}

/// Writes `bytes` as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// `bytes` as a lowercase hex string.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_hex(f, self.0)
        }
    }
    Hex(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(decode_hex("00aBff").unwrap(), vec![0, 0xab, 0xff]);
        assert_eq!(to_hex(&[0, 0xab, 0xff]), "00abff");
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
        assert!(decode_hex("é1").is_err());
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }
}
