//! Counters carried over a hot upgrade: the old process's counter values, read off
//! its Prometheus page, are added to the new process's at every scrape, so that a
//! counter goes on from where the old process left it. Gauges are not carried: they
//! describe the process that renders them.

use std::collections::HashMap;

/// The counter samples of a Prometheus text page: (series, value), the series being
/// the metric name with its labels exactly as rendered (`name{a="b"}`). Only the
/// families whose `# TYPE` is `counter`, and integer values.
///
/// ```
/// use proxy_core::metrics::counter_samples;
/// let page = "# TYPE hits_total counter\nhits_total{route=\"a\"} 7\n# TYPE open gauge\nopen 3\n";
/// assert_eq!(counter_samples(page), vec![("hits_total{route=\"a\"}".to_owned(), 7)]);
/// ```
pub fn counter_samples(page: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for_each_counter(page, |series, value| out.push((series.to_owned(), value)));
    out
}

/// Calls `f` with each counter sample of `page`.
fn for_each_counter(page: &str, mut f: impl FnMut(&str, u64)) {
    let mut family: Option<&str> = None;
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            family = match (words.next(), words.next()) {
                (Some(name), Some("counter")) => Some(name),
                _ => None,
            };
            continue;
        }
        if let Some((series, value)) = counter_sample(line, family) {
            f(series, value);
        }
    }
}

/// A sample line of the counter family `family`: its series and value.
fn counter_sample<'a>(line: &'a str, family: Option<&str>) -> Option<(&'a str, u64)> {
    let family = family?;
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let name = series.split('{').next()?;
    let ours = name == family || name.strip_suffix("_total") == Some(family);
    ours.then_some(())?;
    Some((series, value.trim().parse().ok()?))
}

/// Counter values carried in from the process a hot upgrade replaced, added to this
/// process's own at every scrape ([`crate::Server::carry_counters`]).
///
/// ```
/// use proxy_core::metrics::CounterOffsets;
/// let offsets = CounterOffsets::new([("hits_total".to_owned(), 10)]);
/// let page = "# TYPE hits_total counter\nhits_total 2\n# TYPE open gauge\nopen 3\n";
/// assert_eq!(offsets.apply(page), "# TYPE hits_total counter\nhits_total 12\n# TYPE open gauge\nopen 3\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterOffsets(HashMap<String, u64>);

impl CounterOffsets {
    /// Offsets by series (`name{labels}` as rendered).
    pub fn new(values: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self(values.into_iter().collect())
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many series have an offset.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `page` with each counter sample raised by its series' offset. Series this
    /// process does not render (a route the new config no longer has) are left out.
    pub fn apply(&self, page: &str) -> String {
        if self.0.is_empty() {
            return page.to_owned();
        }
        let mut out = String::with_capacity(page.len() + 64);
        let mut family: Option<&str> = None;
        for line in page.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            if let Some(rest) = body.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                family = match (words.next(), words.next()) {
                    (Some(name), Some("counter")) => Some(name),
                    _ => None,
                };
            } else if let Some((series, value)) = counter_sample(body, family) {
                if let Some(offset) = self.0.get(series) {
                    out.push_str(series);
                    out.push(' ');
                    out.push_str(&value.saturating_add(*offset).to_string());
                    out.push_str(&line[body.len()..]);
                    continue;
                }
            }
            out.push_str(line);
        }
        out
    }
}
