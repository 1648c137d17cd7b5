//! Hot upgrade, metrics: the counters of the admin page read out of the old process
//! and carried into the new one, which adds them to its own at every scrape.

use std::sync::Arc;

use super::Server;
use crate::metrics::{counter_samples, CounterOffsets};

impl Server {
    /// Every counter of the admin `/stats/prometheus` page as (series, value), the
    /// series being the name with its labels as rendered (counters carried in
    /// included): what a hot upgrade carries to the new process
    /// ([`Server::carry_counters`] there).
    pub fn counter_values(&self) -> Vec<(String, u64)> {
        counter_samples(&super::admin::prometheus(self))
    }

    /// Carries counters in from the process this one replaces: from now on each
    /// counter series of the admin page reads what this process counted plus the
    /// value given for it. A later call replaces what an earlier one carried (the
    /// old process sends its values again, grown, when it has drained). Gauges are
    /// not carried.
    pub fn carry_counters(&self, values: impl IntoIterator<Item = (String, u64)>) {
        self.inner
            .counter_offsets
            .store(Arc::new(CounterOffsets::new(values)));
    }
}
