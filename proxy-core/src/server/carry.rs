//! Hot upgrade, metrics: the counters and histograms of the admin page read out of
//! the old process and carried into the new one, which adds them to its own at every
//! scrape.

use std::sync::Arc;

use super::Server;
use crate::metrics::{carried_samples, CarriedValue, MetricOffsets};

impl Server {
    /// Every counter and histogram sample of the admin `/stats/prometheus` page as
    /// (series, value), the series being the name with its labels as rendered
    /// (values carried in included): what a hot upgrade carries to the new process
    /// ([`Server::carry_metrics`] there). Counters, buckets and counts are
    /// integers, histogram sums floats ([`carried_samples`]).
    pub fn metrics_to_carry(&self) -> Vec<(String, CarriedValue)> {
        carried_samples(&super::admin::prometheus(self))
    }

    /// Carries counters and histograms in from the process this one replaces: from
    /// now on each counter series, and each bucket, count and sum of a histogram, of
    /// the admin page reads what this process counted plus the value given for it.
    /// A later call replaces what an earlier one carried (the old process sends its
    /// values again, grown, when it has drained). Gauges are not carried; invalid
    /// values (a NaN, infinite or negative sum) are left out
    /// ([`MetricOffsets::new`]).
    ///
    /// ```
    /// use proxy_core::{config::Config, metrics::CarriedValue, Registry, Server};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_yaml(r#"
    /// listeners:
    ///   - name: web
    ///     address: 127.0.0.1:0
    ///     virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {}, cluster: app}]}]
    /// clusters: [{name: app, endpoints: ["127.0.0.1:9000"]}]
    /// "#)?;
    /// let server = Server::new(config, Registry::default())?;
    /// let (count, sum) = (
    ///     "proxy_cluster_request_duration_seconds_count{cluster=\"app\"}",
    ///     "proxy_cluster_request_duration_seconds_sum{cluster=\"app\"}",
    /// );
    /// // What the old process had observed: 4 requests taking 1.5 s in all.
    /// server.carry_metrics([
    ///     (count.to_owned(), CarriedValue::Integer(4)),
    ///     (sum.to_owned(), CarriedValue::Float(1.5)),
    /// ]);
    /// let now = server.metrics_to_carry();
    /// assert!(now.contains(&(count.to_owned(), CarriedValue::Integer(4))));
    /// assert!(now.contains(&(sum.to_owned(), CarriedValue::Float(1.5))));
    /// # Ok(()) }
    /// ```
    pub fn carry_metrics(&self, values: impl IntoIterator<Item = (String, CarriedValue)>) {
        self.inner
            .metric_offsets
            .store(Arc::new(MetricOffsets::new(values)));
    }
}
