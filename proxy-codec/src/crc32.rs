//! CRC-32 (IEEE 802.3, reflected, as `java.util.zip.CRC32`), for Bolt v2 frames.

/// The CRC-32 of `bytes` (SIMD-accelerated where the CPU has carry-less multiply).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
