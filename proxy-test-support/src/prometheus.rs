//! Samples read from Prometheus text (the admin listener's `/stats/prometheus`).
//!
//! A selector is written as the series is: `name` or `name{label="value",...}`.

/// A series: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Series {
    /// The metric name.
    name: String,
    /// The labels, in the order written.
    labels: Vec<(String, String)>,
}

impl Series {
    /// Parses `name` or `name{a="b",c="d"}` (values may hold escaped quotes).
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let Some((name, rest)) = text.split_once('{') else {
            return (!text.is_empty()).then(|| Self {
                name: text.to_owned(),
                labels: Vec::new(),
            });
        };
        let body = rest.strip_suffix('}')?;
        let mut labels = Vec::new();
        let mut chars = body.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next() != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        Some(Self {
            name: name.trim().to_owned(),
            labels,
        })
    }

    /// Whether `self` has `other`'s name and exactly its labels, in any order.
    fn same(&self, other: &Self) -> bool {
        self.name == other.name
            && self.labels.len() == other.labels.len()
            && other.labels.iter().all(|l| self.labels.contains(l))
    }
}

/// The samples of `text`: series and value, comments skipped.
fn samples(text: &str) -> impl Iterator<Item = (Series, f64)> + '_ {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((Series::parse(series)?, value.trim().parse().ok()?))
        })
}

/// The value of the one series `selector` names, with exactly its labels (in any
/// order): `sample(text, r#"requests_total{route="a"}"#)`. `None` when there is no
/// such series.
///
/// ```
/// let text = "# TYPE hits counter\nhits{b=\"2\",a=\"1\"} 3\nhits{a=\"1\"} 5\n";
/// assert_eq!(proxy_test_support::prometheus::sample(text, r#"hits{a="1",b="2"}"#), Some(3.0));
/// assert_eq!(proxy_test_support::prometheus::sample(text, r#"hits{a="1"}"#), Some(5.0));
/// assert_eq!(proxy_test_support::prometheus::sample(text, "hits"), None);
/// ```
///
/// # Panics
/// When `selector` is not a series.
pub fn sample(text: &str, selector: &str) -> Option<f64> {
    let want = Series::parse(selector).unwrap_or_else(|| panic!("not a series: {selector}"));
    samples(text).find(|(s, _)| s.same(&want)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n# TYPE proxy_route_requests_total counter\n\
        proxy_route_requests_total{route=\"a\",class=\"2xx\"} 2\n\
        proxy_route_requests_total{route=\"b\",class=\"2xx\"} 3\n\
        proxy_route_requests_total{route=\"b\",class=\"5xx\"} 1\n\
        odd{v=\"a \\\"q\\\" b\"} 1.5\n\
        plain 7\n";

    #[test]
    fn exact_label_sets_in_any_order() {
        assert_eq!(
            sample(TEXT, r#"proxy_route_requests_total{class="2xx",route="b"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(TEXT, r#"proxy_route_requests_total{route="b"}"#),
            None
        );
        assert_eq!(sample(TEXT, "plain"), Some(7.0));
        assert_eq!(sample(TEXT, r#"odd{v="a \"q\" b"}"#), Some(1.5));
    }
}
