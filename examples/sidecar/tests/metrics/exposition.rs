//! A checking parser of the Prometheus text format (0.0.4), for `tests/metrics.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses an exposition and checks its structure: every sample's family has exactly
/// one `# TYPE` line, before the family's first sample; a family's samples are
/// contiguous; names, labels and values are well formed; histogram buckets are
/// cumulative and end in `+Inf` equal to `_count`.
pub(crate) fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE") {
                let name = words
                    .next()
                    .ok_or_else(|| at("TYPE without a name".into()))?;
                let kind = words
                    .next()
                    .ok_or_else(|| at("TYPE without a type".into()))?;
                if !valid_name(name) {
                    return Err(at(format!("bad metric name {name:?}")));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(at(format!("second TYPE line for {name}")));
                }
                if done.contains(name) || current.as_deref() == Some(name) {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| at(format!("no TYPE line before sample {}", sample.name)))?;
        if current.as_deref() != Some(family.as_str()) {
            if done.contains(&family) {
                return Err(at(format!(
                    "family {family} interleaved with another family"
                )));
            }
            if let Some(prev) = current.take() {
                done.insert(prev);
            }
            current = Some(family);
        }
        samples.push(sample);
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

pub(crate) fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub(crate) fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(base.to_owned());
            }
        }
    }
    None
}

pub(crate) fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            // label name
            let mut lname = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c == '}' {
                    break;
                }
                lname.push(c);
                chars.next();
            }
            match chars.next() {
                Some((j, '}')) if lname.is_empty() => break j,
                Some((_, '=')) => {}
                _ => return Err(format!("bad label near {lname:?}")),
            }
            if !valid_name(&lname) || lname.contains(':') {
                return Err(format!("bad label name {lname:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {lname} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            if labels.insert(lname.clone(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((j, '}')) => break j,
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        };
        rest = &after[end + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_owned())?;
    let mut parts = rest.split(' ');
    let v = parts.next().unwrap_or_default();
    let value = match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

pub(crate) fn check_histograms(
    samples: &[Sample],
    types: &HashMap<String, String>,
) -> Result<(), String> {
    // (family, labels without le) -> buckets in order, count
    type Key = (String, BTreeMap<String, String>);
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    for s in samples {
        let Some(family) = family_of(&s.name, types) else {
            continue;
        };
        if types.get(&family).map(String::as_str) != Some("histogram") {
            continue;
        }
        let mut labels = s.labels.clone();
        if s.name.ends_with("_bucket") {
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("{} without le: {:?}", s.name, s.labels))?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|e| format!("bad le {le:?}: {e}"))?
            };
            buckets
                .entry((family, labels))
                .or_default()
                .push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert((family, labels), s.value);
        }
    }
    for (key, bs) in &buckets {
        for w in bs.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!(
                    "{key:?}: buckets not increasing/cumulative: {bs:?}"
                ));
            }
        }
        let last = bs.last().copied().unwrap_or_default();
        if last.0 != f64::INFINITY {
            return Err(format!("{key:?}: no +Inf bucket"));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!(
                "{key:?}: +Inf bucket {} != _count {:?}",
                last.1,
                counts.get(key)
            ));
        }
    }
    Ok(())
}

/// The value of the one sample named `name` whose labels include all of `labels`.
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one sample {name}{labels:?}; found {found:#?}"
    );
    found[0].value
}

#[test]
fn the_checker_accepts_good_and_refuses_bad_expositions() {
    let good = "# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.3\nh_count 2\n# TYPE g gauge\ng{v=\"q\\\"uote\"} -1.5e3\n";
    let s = parse_exposition(good).expect("good exposition");
    assert_eq!(value(&s, "g", &[("v", "q\"uote")]), -1500.0);
    let bad = [
        ("a 1\n", "no TYPE"),
        ("# TYPE a counter\n# TYPE a counter\na 1\n", "second TYPE"),
        (
            "# TYPE a counter\n# TYPE b counter\na 1\nb 1\na{x=\"1\"} 2\n",
            "interleaved",
        ),
        ("# TYPE a counter\na{x=1} 1\n", "not quoted"),
        ("# TYPE a counter\na one\n", "bad value"),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "cumulative",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
            "_count",
        ),
    ];
    for (text, why) in bad {
        let err = parse_exposition(text).expect_err(text);
        assert!(err.contains(why), "{text:?}: expected {why:?} in {err:?}");
    }
}
