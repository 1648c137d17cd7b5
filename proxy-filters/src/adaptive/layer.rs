//! The tower layer of the adaptive concurrency limiter.

use std::sync::Arc;

use tower_layer::Layer;

use super::{
    config::{AdaptiveConfig, AdaptiveConfigError},
    control,
    limiter::{AdaptiveConcurrency, Shared},
    metrics::{AdaptiveMetrics, LimiterStats},
};

/// Builds [`AdaptiveConcurrency`] services that share one gate and one control loop.
///
/// Cheap to clone. The control loop starts when the layer wraps a service inside a
/// tokio runtime, or at the first request, and stops once the layer and every service
/// made from it are dropped.
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrencyLayer {
    shared: Arc<Shared>,
}

impl AdaptiveConcurrencyLayer {
    /// A limiter with its own metrics.
    ///
    /// # Errors
    /// When the config is refused (the error names the field).
    pub fn new(config: &AdaptiveConfig) -> Result<Self, AdaptiveConfigError> {
        Self::with_metrics(config, &AdaptiveMetrics::default())
    }

    /// A limiter whose figures go to `metrics` under `config.name` (`default` if unset).
    ///
    /// # Errors
    /// When the config is refused (the error names the field).
    pub fn with_metrics(
        config: &AdaptiveConfig,
        metrics: &AdaptiveMetrics,
    ) -> Result<Self, AdaptiveConfigError> {
        let settings = config.validated()?;
        for w in &settings.warnings {
            tracing::warn!(filter = "adaptive_concurrency", warning = %w, "config value clamped");
        }
        let stats = metrics.limiter(config.name.as_deref().unwrap_or("default"));
        Ok(Self {
            shared: Arc::new(Shared::new(settings, stats)),
        })
    }

    /// This limiter's figures.
    pub fn stats(&self) -> &Arc<LimiterStats> {
        &self.shared.stats
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.shared.gate.limit()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.shared.gate.in_flight()
    }

    /// Warnings for config values that were clamped (also logged), naming the field.
    pub fn warnings(&self) -> &[String] {
        &self.shared.settings.warnings
    }
}

impl<S> Layer<S> for AdaptiveConcurrencyLayer {
    type Service = AdaptiveConcurrency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        control::start(&self.shared);
        AdaptiveConcurrency::new(inner, self.shared.clone())
    }
}
