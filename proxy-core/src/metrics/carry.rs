//! Counters and histograms carried over a hot upgrade: the old process's values, read
//! off its Prometheus page, are added to the new process's at every scrape, so that a
//! counter, and each bucket, count and sum of a histogram, goes on from where the old
//! process left it. Gauges are not carried: they describe the process that renders
//! them.

use std::collections::HashMap;

/// The value of one carried series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CarriedValue {
    /// A counter, a histogram's bucket (`_bucket{le="..."}`) or its `_count`.
    Integer(u64),
    /// A histogram's `_sum`: finite and not negative ([`CarriedValue::is_valid`]).
    Float(f64),
}

impl CarriedValue {
    /// Whether the value may be carried: any integer; a float that is finite and not
    /// negative (a sum of durations). NaN, infinities and negative values are
    /// refused wherever values come in: on a page, from a peer, in
    /// [`MetricOffsets::new`].
    ///
    /// ```
    /// use proxy_core::metrics::CarriedValue;
    /// assert!(CarriedValue::Float(0.25).is_valid());
    /// assert!(!CarriedValue::Float(f64::NAN).is_valid());
    /// assert!(!CarriedValue::Float(-1.0).is_valid());
    /// ```
    pub fn is_valid(self) -> bool {
        match self {
            Self::Integer(_) => true,
            Self::Float(v) => v.is_finite() && v >= 0.0,
        }
    }
}

/// The families a page declares that are carried.
#[derive(Debug, Clone, Copy)]
enum Family<'a> {
    Counter(&'a str),
    Histogram(&'a str),
}

impl<'a> Family<'a> {
    /// The family a `# TYPE` line declares, if carried.
    fn of_type_line(line: &'a str) -> Option<Option<Self>> {
        let rest = line.strip_prefix("# TYPE ")?;
        let mut words = rest.split_whitespace();
        Some(match (words.next(), words.next()) {
            (Some(name), Some("counter")) => Some(Self::Counter(name)),
            (Some(name), Some("histogram")) => Some(Self::Histogram(name)),
            _ => None,
        })
    }

    /// A sample line of this family: its series and value; `None` for a comment, a
    /// line of another family, or a value that is not of the series' kind (an
    /// integer for counters, buckets and counts; a finite, non-negative number for
    /// sums).
    fn sample(self, line: &'a str) -> Option<(&'a str, CarriedValue)> {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let name = series.split('{').next()?;
        let value = value.trim();
        let value = match self {
            Self::Counter(family) => {
                let ours = name == family || name.strip_suffix("_total") == Some(family);
                ours.then_some(())?;
                CarriedValue::Integer(value.parse().ok()?)
            }
            Self::Histogram(family) => match name.strip_prefix(family)? {
                "_bucket" | "_count" => CarriedValue::Integer(value.parse().ok()?),
                "_sum" => CarriedValue::Float(value.parse().ok()?),
                _ => return None,
            },
        };
        value.is_valid().then_some((series, value))
    }
}

/// Calls `f` with each carried sample of `page`.
fn for_each_sample<'a>(page: &'a str, mut f: impl FnMut(&'a str, CarriedValue)) {
    let mut family: Option<Family<'a>> = None;
    for line in page.lines() {
        if let Some(declared) = Family::of_type_line(line) {
            family = declared;
        } else if let Some((series, value)) = family.and_then(|f| f.sample(line)) {
            f(series, value);
        }
    }
}

/// The samples of a Prometheus text page that a hot upgrade carries: (series, value),
/// the series being the metric name with its labels exactly as rendered
/// (`name{a="b"}`). The families whose `# TYPE` is `counter` (integer values) or
/// `histogram` (`_bucket` and `_count` as integers, `_sum` as a finite,
/// non-negative float); lines whose value is not of that kind are left out.
///
/// ```
/// use proxy_core::metrics::{carried_samples, CarriedValue};
/// let page = concat!(
///     "# TYPE hits_total counter\nhits_total{route=\"a\"} 7\n# TYPE open gauge\nopen 3\n",
///     "# TYPE t histogram\nt_bucket{le=\"+Inf\"} 2\nt_sum 0.5\nt_count 2\n",
/// );
/// assert_eq!(carried_samples(page), vec![
///     ("hits_total{route=\"a\"}".to_owned(), CarriedValue::Integer(7)),
///     ("t_bucket{le=\"+Inf\"}".to_owned(), CarriedValue::Integer(2)),
///     ("t_sum".to_owned(), CarriedValue::Float(0.5)),
///     ("t_count".to_owned(), CarriedValue::Integer(2)),
/// ]);
/// ```
pub fn carried_samples(page: &str) -> Vec<(String, CarriedValue)> {
    let mut out = Vec::new();
    for_each_sample(page, |series, value| out.push((series.to_owned(), value)));
    out
}

/// Values carried in from the process a hot upgrade replaced, added to this
/// process's own at every scrape ([`crate::Server::carry_metrics`]).
///
/// ```
/// use proxy_core::metrics::{CarriedValue, MetricOffsets};
/// let offsets = MetricOffsets::new([
///     ("hits_total".to_owned(), CarriedValue::Integer(10)),
///     ("t_sum".to_owned(), CarriedValue::Float(1.5)),
/// ]);
/// let page = "# TYPE hits_total counter\nhits_total 2\n# TYPE t histogram\nt_sum 0.25\n";
/// assert_eq!(offsets.apply(page), "# TYPE hits_total counter\nhits_total 12\n# TYPE t histogram\nt_sum 1.75\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricOffsets(HashMap<String, CarriedValue>);

impl MetricOffsets {
    /// Offsets by series (`name{labels}` as rendered). Values that are not valid
    /// ([`CarriedValue::is_valid`]: a NaN, infinite or negative float) are left out
    /// and logged.
    pub fn new(values: impl IntoIterator<Item = (String, CarriedValue)>) -> Self {
        let mut invalid = 0usize;
        let offsets = values
            .into_iter()
            .filter(|(_, v)| {
                invalid += usize::from(!v.is_valid());
                v.is_valid()
            })
            .collect();
        if invalid > 0 {
            tracing::warn!(
                invalid,
                "carried values that are not finite and non-negative are left out"
            );
        }
        Self(offsets)
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many series have an offset.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `page` with each counter sample, histogram bucket, count and sum raised by its
    /// series' offset. Series this process does not render (a route the new config no
    /// longer has) are left out, and an offset of the other kind than the sample
    /// (an integer for a sum) is not applied.
    pub fn apply(&self, page: &str) -> String {
        if self.0.is_empty() {
            return page.to_owned();
        }
        let mut out = String::with_capacity(page.len() + 64);
        let mut family: Option<Family<'_>> = None;
        for line in page.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            if let Some(declared) = Family::of_type_line(body) {
                family = declared;
            } else if let Some((series, value)) = family.and_then(|f| f.sample(body)) {
                if let Some(total) = self.0.get(series).and_then(|o| added(value, *o)) {
                    out.push_str(series);
                    out.push(' ');
                    out.push_str(&total);
                    out.push_str(&line[body.len()..]);
                    continue;
                }
            }
            out.push_str(line);
        }
        out
    }
}

/// `value` plus `offset`, as rendered, when both are of the same kind.
fn added(value: CarriedValue, offset: CarriedValue) -> Option<String> {
    match (value, offset) {
        (CarriedValue::Integer(v), CarriedValue::Integer(o)) => {
            Some(v.saturating_add(o).to_string())
        }
        (CarriedValue::Float(v), CarriedValue::Float(o)) => Some((v + o).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{render_requests, RequestStats};
    use std::time::Duration;

    use CarriedValue::{Float, Integer};

    fn value(samples: &[(String, CarriedValue)], series: &str) -> Option<CarriedValue> {
        samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
    }

    /// A page as the admin renders it: a route's request counters and its latency
    /// histogram after `durations`.
    fn route_page(durations: &[Duration]) -> String {
        let stats = RequestStats::default();
        for d in durations {
            stats.start();
            stats.finish(200, *d);
        }
        let mut out = String::new();
        render_requests(
            &mut out,
            "proxy_route",
            &[("route=\"r\"".to_owned(), &stats)],
        );
        out
    }

    #[test]
    fn carry_reads_the_histogram_families_with_float_sums() {
        let page = route_page(&[Duration::from_millis(3), Duration::from_millis(300)]);
        let samples = carried_samples(&page);
        let h = "proxy_route_request_duration_seconds";
        assert_eq!(
            value(&samples, &format!("{h}_bucket{{route=\"r\",le=\"0.005\"}}")),
            Some(Integer(1))
        );
        assert_eq!(
            value(&samples, &format!("{h}_bucket{{route=\"r\",le=\"+Inf\"}}")),
            Some(Integer(2))
        );
        assert_eq!(
            value(&samples, &format!("{h}_count{{route=\"r\"}}")),
            Some(Integer(2))
        );
        assert_eq!(
            value(&samples, &format!("{h}_sum{{route=\"r\"}}")),
            Some(Float(0.303))
        );
        assert_eq!(
            value(&samples, "proxy_route_requests_total{route=\"r\"}"),
            Some(Integer(2))
        );
        // 15 buckets, a sum and a count; the gauge of requests in flight is not carried.
        let histogram = samples.iter().filter(|(s, _)| s.starts_with(h)).count();
        assert_eq!(histogram, 17);
        assert!(value(&samples, "proxy_route_requests_active{route=\"r\"}").is_none());
    }

    #[test]
    fn carry_skips_malformed_lines_and_values_of_the_wrong_kind() {
        let page = "# TYPE t histogram\n\
                    t_bucket{le=\"1\"} 1.5\n\
                    t_bucket{le=\"+Inf\"} -1\n\
                    t_count nope\n\
                    t_sum NaN\n\
                    t_sum{a=\"inf\"} inf\n\
                    t_sum{a=\"neg\"} -0.5\n\
                    t_sum{a=\"exp\"} 2.5e-3\n\
                    t_created 17\n\
                    t_bucket\n\
                    other_total 4\n\
                    # TYPE c counter\n\
                    c_total 1.0\n\
                    c_total{a=\"b\"} 3\n\
                    # TYPE s summary\n\
                    s_sum 1\n";
        assert_eq!(
            carried_samples(page),
            vec![
                ("t_sum{a=\"exp\"}".to_owned(), Float(0.0025)),
                ("c_total{a=\"b\"}".to_owned(), Integer(3)),
            ]
        );
    }

    #[test]
    fn carry_offsets_histograms_so_they_go_on_from_the_old_process() {
        let old = route_page(&[Duration::from_millis(3), Duration::from_millis(300)]);
        let offsets = MetricOffsets::new(carried_samples(&old));
        let new = route_page(&[Duration::from_millis(4)]);
        let carried = carried_samples(&offsets.apply(&new));
        let h = "proxy_route_request_duration_seconds";
        assert_eq!(
            value(&carried, &format!("{h}_count{{route=\"r\"}}")),
            Some(Integer(3))
        );
        assert_eq!(
            value(&carried, &format!("{h}_bucket{{route=\"r\",le=\"0.005\"}}")),
            Some(Integer(2))
        );
        assert_eq!(
            value(&carried, &format!("{h}_bucket{{route=\"r\",le=\"0.5\"}}")),
            Some(Integer(3))
        );
        let Some(Float(sum)) = value(&carried, &format!("{h}_sum{{route=\"r\"}}")) else {
            panic!("no sum in {carried:?}");
        };
        assert!((sum - 0.307).abs() < 1e-9, "{sum}");
        assert_eq!(
            value(&carried, "proxy_route_requests_total{route=\"r\"}"),
            Some(Integer(3))
        );
        // The buckets stay cumulative.
        let buckets: Vec<u64> = carried
            .iter()
            .filter(|(s, _)| s.starts_with(&format!("{h}_bucket")))
            .map(|(_, v)| match v {
                Integer(n) => *n,
                Float(_) => panic!("a float bucket"),
            })
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn carry_refuses_invalid_offsets_and_offsets_of_the_other_kind() {
        let offsets = MetricOffsets::new([
            ("t_sum{a=\"nan\"}".to_owned(), Float(f64::NAN)),
            ("t_sum{a=\"inf\"}".to_owned(), Float(f64::INFINITY)),
            ("t_sum{a=\"neg\"}".to_owned(), Float(-2.0)),
            ("t_sum{a=\"int\"}".to_owned(), Integer(4)),
            ("t_count{a=\"float\"}".to_owned(), Float(4.0)),
            ("gone_total".to_owned(), Integer(9)),
        ]);
        assert_eq!(offsets.len(), 3);
        let page = "# TYPE t histogram\n\
                    t_sum{a=\"nan\"} 1\n\
                    t_sum{a=\"inf\"} 1\n\
                    t_sum{a=\"neg\"} 1\n\
                    t_sum{a=\"int\"} 1\n\
                    t_count{a=\"float\"} 1\n";
        // Nothing applies; a series this page does not render is not added.
        assert_eq!(offsets.apply(page), page);
    }

    #[test]
    fn carry_keeps_counters_as_before() {
        let offsets = MetricOffsets::new([("hits_total{r=\"a\"}".to_owned(), Integer(u64::MAX))]);
        let page =
            "# TYPE hits counter\nhits_total{r=\"a\"} 5\n# TYPE g gauge\nhits_total{r=\"a\"} 1\n";
        assert_eq!(
            offsets.apply(page),
            format!(
                "# TYPE hits counter\nhits_total{{r=\"a\"}} {}\n# TYPE g gauge\nhits_total{{r=\"a\"}} 1\n",
                u64::MAX
            )
        );
    }
}
