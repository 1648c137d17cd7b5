//! The `metrics` message: the old process's counters (version 3) and histograms
//! (version 6), by series.

use proxy_core::metrics::CarriedValue;

use super::{malformed, Message, Reader, HEADER_BYTES, MAX_MESSAGE_BYTES};
use crate::UpgradeError;

/// The longest series (a metric name with its labels), in bytes.
pub const MAX_SERIES_BYTES: usize = 4096;

/// The most series one set of `metrics` messages carries; more are left out (and
/// logged) by the new process.
pub const MAX_SERIES: usize = 1 << 20;

/// The most bytes of series names one set carries (64 MiB); more are left out.
pub const MAX_SERIES_TOTAL_BYTES: usize = 64 << 20;

/// The first version whose samples say their value's kind (and so may be floats).
const VALUE_KINDS_SINCE: u16 = 6;

/// Version 6 `kind: u8` of a sample: an integer, `u64`.
const KIND_INTEGER: u8 = 0;
/// Version 6 `kind: u8` of a sample: a float, the `f64`'s IEEE 754 bits as a `u64`.
const KIND_FLOAT: u8 = 1;

/// The bytes of one sample of `series_len` bytes in `version`.
fn sample_bytes(series_len: usize, version: u16) -> usize {
    2 + series_len + usize::from(version >= VALUE_KINDS_SINCE) + 8
}

/// Whether `version` can carry `value` (a float needs version 6), and it is valid
/// ([`CarriedValue::is_valid`]).
fn sendable(value: CarriedValue, version: u16) -> bool {
    value.is_valid() && (version >= VALUE_KINDS_SINCE || matches!(value, CarriedValue::Integer(_)))
}

/// `count: u32`, then per sample `series_len: u16`, the series (UTF-8, 1 to
/// [`MAX_SERIES_BYTES`] bytes), version 6 `kind: u8` (0 integer, 1 float), and the
/// value in 8 bytes (`u64`, or the bits of a finite, non-negative `f64`). Before
/// version 6 there is no kind: every value is an integer, and a float is refused.
pub(super) fn encode(
    out: &mut Vec<u8>,
    samples: &[(String, CarriedValue)],
    version: u16,
) -> Result<(), UpgradeError> {
    let count = u32::try_from(samples.len())
        .map_err(|_| malformed(format!("{} samples in one message", samples.len())))?;
    out.extend_from_slice(&count.to_be_bytes());
    for (series, value) in samples {
        if series.is_empty() || series.len() > MAX_SERIES_BYTES {
            return Err(malformed(format!("a series of {} bytes", series.len())));
        }
        if !sendable(*value, version) {
            return Err(malformed(format!(
                "the value {value:?} of {series} in version {version}"
            )));
        }
        out.extend_from_slice(&(series.len() as u16).to_be_bytes());
        out.extend_from_slice(series.as_bytes());
        let (kind, bits) = match value {
            CarriedValue::Integer(v) => (KIND_INTEGER, *v),
            CarriedValue::Float(v) => (KIND_FLOAT, v.to_bits()),
        };
        if version >= VALUE_KINDS_SINCE {
            out.push(kind);
        }
        out.extend_from_slice(&bits.to_be_bytes());
    }
    Ok(())
}

pub(super) fn decode(
    r: &mut Reader<'_>,
    version: u16,
) -> Result<Vec<(String, CarriedValue)>, UpgradeError> {
    let count = r.u32()? as usize;
    // Each sample takes at least this much: a count beyond what is left is a lie.
    let least = sample_bytes(1, version);
    if count > r.0.len() / least {
        return Err(UpgradeError::Truncated(format!(
            "{count} samples in {} bytes",
            r.0.len()
        )));
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        if len == 0 || len > MAX_SERIES_BYTES {
            return Err(malformed(format!("a series of {len} bytes")));
        }
        let series = std::str::from_utf8(r.take(len)?)
            .map_err(|_| malformed("a series that is not UTF-8".into()))?
            .to_owned();
        let kind = if version >= VALUE_KINDS_SINCE {
            r.u8()?
        } else {
            KIND_INTEGER
        };
        let bits = r.u64()?;
        let value = match kind {
            KIND_INTEGER => CarriedValue::Integer(bits),
            KIND_FLOAT => CarriedValue::Float(f64::from_bits(bits)),
            k => return Err(malformed(format!("unknown value kind {k} of {series}"))),
        };
        if !value.is_valid() {
            return Err(malformed(format!(
                "the value of {series} is {value:?}, not a finite, non-negative number"
            )));
        }
        samples.push((series, value));
    }
    Ok(samples)
}

/// The `metrics` messages that carry `samples` in `version`, each within
/// [`MAX_MESSAGE_BYTES`](super::MAX_MESSAGE_BYTES); all but the last say `more`.
/// Series longer than [`MAX_SERIES_BYTES`], invalid values
/// ([`CarriedValue::is_valid`]) and, before version 6, floats (histogram sums) are
/// left out.
///
/// ```
/// use proxy_core::metrics::CarriedValue;
/// use proxy_upgrade::wire::{encode, metrics_messages, Message, VERSION};
/// let samples: Vec<_> = (0..10_000)
///     .map(|i| (format!("hits_total{{route=\"r{i}\"}}"), CarriedValue::Integer(i)))
///     .collect();
/// let messages = metrics_messages(&samples, VERSION);
/// assert!(messages.len() > 1);
/// for m in &messages {
///     assert!(encode(m).is_ok());
/// }
/// assert!(matches!(messages.last(), Some(Message::Metrics { more: false, .. })));
/// ```
pub fn metrics_messages(samples: &[(String, CarriedValue)], version: u16) -> Vec<Message> {
    let budget = MAX_MESSAGE_BYTES - HEADER_BYTES - 4;
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for (series, value) in samples {
        if series.is_empty() || series.len() > MAX_SERIES_BYTES || !sendable(*value, version) {
            continue;
        }
        let len = sample_bytes(series.len(), version);
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
        .map(|(i, samples)| Message::Metrics {
            samples,
            more: i < last,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{decode, decode_versioned, encode, encode_version, FLAG_MORE, VERSION};
    use super::*;
    use CarriedValue::{Float, Integer};

    fn samples_of(m: &Message) -> &[(String, CarriedValue)] {
        match m {
            Message::Metrics { samples, .. } => samples,
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn samples_round_trip_and_split_over_messages() {
        let samples: Vec<_> = (0..5000u64)
            .map(|i| {
                let value = if i % 3 == 0 {
                    Float(i as f64 / 7.0)
                } else {
                    Integer(i * 7)
                };
                (format!("proxy_route_x{{route=\"r{i}\"}}"), value)
            })
            .collect();
        let messages = metrics_messages(&samples, VERSION);
        assert!(messages.len() > 1);
        let mut back = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let bytes = encode(m).expect("encode");
            assert!(bytes.len() <= MAX_MESSAGE_BYTES);
            assert_eq!(bytes[7] == FLAG_MORE, i + 1 < messages.len());
            back.extend_from_slice(samples_of(&decode(&bytes).expect("decode")));
        }
        assert_eq!(back, samples);
        // None at all is one empty message.
        assert_eq!(
            metrics_messages(&[], VERSION),
            vec![Message::Metrics {
                samples: Vec::new(),
                more: false
            }]
        );
    }

    #[test]
    fn an_older_peer_gets_the_integers_only() {
        let samples = vec![
            ("hits_total".to_owned(), Integer(3)),
            ("t_sum".to_owned(), Float(0.5)),
            ("t_count".to_owned(), Integer(2)),
        ];
        let messages = metrics_messages(&samples, 5);
        assert_eq!(
            messages,
            vec![Message::Metrics {
                samples: vec![samples[0].clone(), samples[2].clone()],
                more: false
            }]
        );
        // Version 5's layout: no kind byte, values are integers.
        let bytes = encode_version(&messages[0], 5).expect("encode");
        assert_eq!(bytes.len(), HEADER_BYTES + 4 + (2 + 10 + 8) + (2 + 7 + 8));
        let (version, back) = decode_versioned(&bytes).expect("decode");
        assert_eq!((version, back), (5, messages[0].clone()));
        // A float cannot be said before version 6.
        let float = Message::Metrics {
            samples: vec![samples[1].clone()],
            more: false,
        };
        assert!(matches!(
            encode_version(&float, 5),
            Err(UpgradeError::Malformed(_))
        ));
        let bytes = encode_version(&float, 6).expect("encode");
        assert_eq!(bytes.len(), HEADER_BYTES + 4 + 2 + 5 + 1 + 8);
        assert_eq!(decode(&bytes).expect("decode"), float);
    }

    #[test]
    fn metrics_are_version_3_and_bad_ones_are_errors() {
        let m = Message::Metrics {
            samples: vec![("hits_total".into(), Integer(u64::MAX))],
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
        let long = vec![("x".repeat(MAX_SERIES_BYTES + 1), Integer(1))];
        let too_long = Message::Metrics {
            samples: long.clone(),
            more: false,
        };
        assert!(matches!(encode(&too_long), Err(UpgradeError::Malformed(_))));
        assert_eq!(
            metrics_messages(&long, VERSION),
            vec![Message::Metrics {
                samples: Vec::new(),
                more: false
            }]
        );
    }

    #[test]
    fn floats_that_are_not_finite_and_non_negative_are_refused_both_ways() {
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5];
        for v in bad {
            let m = Message::Metrics {
                samples: vec![("t_sum".into(), Float(v))],
                more: false,
            };
            assert!(matches!(encode(&m), Err(UpgradeError::Malformed(_))), "{v}");
            assert_eq!(
                metrics_messages(&[("t_sum".into(), Float(v))], VERSION),
                vec![Message::Metrics {
                    samples: Vec::new(),
                    more: false
                }]
            );
        }
        // A peer that sends them anyway: its message is refused, naming the series.
        let good = encode(&Message::Metrics {
            samples: vec![("t_sum".into(), Float(1.5))],
            more: false,
        })
        .expect("encode");
        let value_at = good.len() - 8;
        for v in bad {
            let mut bytes = good.clone();
            bytes[value_at..].copy_from_slice(&v.to_bits().to_be_bytes());
            match decode(&bytes) {
                Err(UpgradeError::Malformed(why)) => assert!(why.contains("t_sum"), "{why}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        // An unknown kind of value.
        let mut bytes = good.clone();
        bytes[value_at - 1] = 7;
        match decode(&bytes) {
            Err(UpgradeError::Malformed(why)) => assert!(why.contains("kind 7"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
