//! SOFARPC's header map serialization: repeated `key length (i32) | key | value
//! length (i32, -1 for null) | value`, UTF-8.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::DecodeError;

/// Parses a header map, calling `each` per entry.
pub(crate) fn parse(
    mut b: Bytes,
    mut each: impl FnMut(Bytes, Option<Bytes>),
) -> Result<(), DecodeError> {
    fn len(b: &mut Bytes) -> Result<i32, DecodeError> {
        if b.len() < 4 {
            return Err(DecodeError::Malformed("truncated bolt header map"));
        }
        let n = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let _ = b.split_to(4);
        Ok(n)
    }
    fn take(b: &mut Bytes, n: i32) -> Result<Option<Bytes>, DecodeError> {
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if b.len() < n {
            return Err(DecodeError::Malformed("truncated bolt header map"));
        }
        Ok(Some(b.split_to(n)))
    }
    while !b.is_empty() {
        let n = len(&mut b)?;
        let key = take(&mut b, n)?.unwrap_or_default();
        let n = len(&mut b)?;
        let value = take(&mut b, n)?;
        each(key, value);
    }
    Ok(())
}

/// The bytes [`put`] appends for one entry.
pub(crate) fn entry_len(key: &[u8], value: Option<&[u8]>) -> usize {
    8 + key.len() + value.map_or(0, <[u8]>::len)
}

/// Appends one entry.
pub(crate) fn put(dst: &mut BytesMut, key: &[u8], value: Option<&[u8]>) {
    dst.put_i32(key.len() as i32);
    dst.put_slice(key);
    match value {
        Some(v) => {
            dst.put_i32(v.len() as i32);
            dst.put_slice(v);
        }
        None => dst.put_i32(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_null_and_empty() {
        let mut b = BytesMut::new();
        put(&mut b, b"service", Some(b"com.example.Hello:1.0"));
        put(&mut b, b"empty", Some(b""));
        put(&mut b, b"null", None);
        let mut got = Vec::new();
        parse(b.freeze(), |k, v| got.push((k, v))).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.as_deref(), Some(&b"com.example.Hello:1.0"[..]));
        assert_eq!(got[1].1.as_deref(), Some(&b""[..]));
        assert_eq!(got[2].1, None);
        assert!(parse(Bytes::from_static(b"\0\0\0\x09ab"), |_, _| {}).is_err());
    }
}
