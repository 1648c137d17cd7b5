//! The `metrics` message of version 3: the old process's counters, by series.

use super::{malformed, Message, Reader, HEADER_BYTES, MAX_MESSAGE_BYTES};
use crate::UpgradeError;

/// The longest series (a metric name with its labels), in bytes.
pub const MAX_SERIES_BYTES: usize = 4096;

/// The most series one set of `metrics` messages carries; more are left out (and
/// logged) by the new process.
pub const MAX_SERIES: usize = 1 << 20;

/// The most bytes of series names one set carries (64 MiB); more are left out.
pub const MAX_SERIES_TOTAL_BYTES: usize = 64 << 20;

/// `count: u32`, then per counter `series_len: u16`, the series (UTF-8, 1 to
/// [`MAX_SERIES_BYTES`] bytes) and `value: u64`.
pub(super) fn encode(out: &mut Vec<u8>, counters: &[(String, u64)]) -> Result<(), UpgradeError> {
    let count = u32::try_from(counters.len())
        .map_err(|_| malformed(format!("{} counters in one message", counters.len())))?;
    out.extend_from_slice(&count.to_be_bytes());
    for (series, value) in counters {
        if series.is_empty() || series.len() > MAX_SERIES_BYTES {
            return Err(malformed(format!("a series of {} bytes", series.len())));
        }
        out.extend_from_slice(&(series.len() as u16).to_be_bytes());
        out.extend_from_slice(series.as_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

pub(super) fn decode(r: &mut Reader<'_>) -> Result<Vec<(String, u64)>, UpgradeError> {
    let count = r.u32()? as usize;
    // Each counter takes at least 11 bytes: a count beyond what is left is a lie.
    if count > r.0.len() / 11 {
        return Err(UpgradeError::Truncated(format!(
            "{count} counters in {} bytes",
            r.0.len()
        )));
    }
    let mut counters = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        if len == 0 || len > MAX_SERIES_BYTES {
            return Err(malformed(format!("a series of {len} bytes")));
        }
        let series = std::str::from_utf8(r.take(len)?)
            .map_err(|_| malformed("a series that is not UTF-8".into()))?
            .to_owned();
        counters.push((series, r.u64()?));
    }
    Ok(counters)
}

/// The `metrics` messages that carry `counters`, each within
/// [`MAX_MESSAGE_BYTES`](super::MAX_MESSAGE_BYTES); all but the last say `more`.
/// Series longer than [`MAX_SERIES_BYTES`] are left out.
///
/// ```
/// use proxy_upgrade::wire::{encode, metrics_messages, Message};
/// let counters: Vec<_> = (0..10_000).map(|i| (format!("hits_total{{route=\"r{i}\"}}"), i)).collect();
/// let messages = metrics_messages(&counters);
/// assert!(messages.len() > 1);
/// for m in &messages {
///     assert!(encode(m).is_ok());
/// }
/// assert!(matches!(messages.last(), Some(Message::Metrics { more: false, .. })));
/// ```
pub fn metrics_messages(counters: &[(String, u64)]) -> Vec<Message> {
    let budget = MAX_MESSAGE_BYTES - HEADER_BYTES - 4;
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for (series, value) in counters {
        if series.is_empty() || series.len() > MAX_SERIES_BYTES {
            continue;
        }
        let len = 2 + series.len() + 8;
        if size + len > budget {
            messages.push(std::mem::take(&mut chunk));
            size = 0;
        }
        chunk.push((series.clone(), *value));
        size += len;
    }
    messages.push(chunk);
    let last = messages.len() - 1;
    messages
        .into_iter()
        .enumerate()
        .map(|(i, counters)| Message::Metrics {
            counters,
            more: i < last,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, encode_version, FLAG_MORE};
    use super::*;

    #[test]
    fn counters_round_trip_and_split_over_messages() {
        let counters: Vec<_> = (0..5000u64)
            .map(|i| {
                (
                    format!("proxy_route_requests_total{{route=\"r{i}\"}}"),
                    i * 7,
                )
            })
            .collect();
        let messages = metrics_messages(&counters);
        assert!(messages.len() > 1);
        let mut back = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let bytes = encode(m).expect("encode");
            assert!(bytes.len() <= MAX_MESSAGE_BYTES);
            assert_eq!(bytes[7] == FLAG_MORE, i + 1 < messages.len());
            match decode(&bytes).expect("decode") {
                Message::Metrics { counters, .. } => back.extend(counters),
                other => panic!("decoded {other:?}"),
            }
        }
        assert_eq!(back, counters);
        // None at all is one empty message.
        assert_eq!(
            metrics_messages(&[]),
            vec![Message::Metrics {
                counters: Vec::new(),
                more: false
            }]
        );
    }

    #[test]
    fn metrics_are_version_3_and_bad_ones_are_errors() {
        let m = Message::Metrics {
            counters: vec![("hits_total".into(), u64::MAX)],
            more: false,
        };
        assert!(matches!(
            encode_version(&m, 2),
            Err(UpgradeError::Malformed(_))
        ));
        let good = encode(&m).expect("encode");
        // A count the payload cannot hold.
        let mut bytes = good.clone();
        bytes[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(UpgradeError::Truncated(_))));
        // An empty series, and one that is not UTF-8.
        let mut bytes = good.clone();
        bytes[HEADER_BYTES + 4..HEADER_BYTES + 6].copy_from_slice(&0u16.to_be_bytes());
        assert!(decode(&bytes).is_err());
        let mut bytes = good.clone();
        bytes[HEADER_BYTES + 6] = 0xff;
        assert!(matches!(decode(&bytes), Err(UpgradeError::Malformed(_))));
        // Truncated anywhere.
        for cut in HEADER_BYTES..good.len() {
            assert!(matches!(
                decode(&good[..cut]),
                Err(UpgradeError::Truncated(_))
            ));
        }
        // A series over the limit is refused when encoding, left out when split.
        let long = vec![("x".repeat(MAX_SERIES_BYTES + 1), 1)];
        let too_long = Message::Metrics {
            counters: long.clone(),
            more: false,
        };
        assert!(matches!(encode(&too_long), Err(UpgradeError::Malformed(_))));
        assert_eq!(
            metrics_messages(&long),
            vec![Message::Metrics {
                counters: Vec::new(),
                more: false
            }]
        );
    }
}
