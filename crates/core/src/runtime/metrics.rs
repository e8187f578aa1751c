//! Prometheus metrics of a controller: reconciles, failures by reason, reconcile durations.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    controller: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: String,
    reason: String,
}

/// Reconcile metrics of one component.
pub struct ControllerMetrics {
    component: String,
    reconciles: Family<ControllerLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    writes: Family<WriteLabels, Counter>,
}

impl ControllerMetrics {
    /// Registers the metrics (`wharf_reconciles_total`, `wharf_reconcile_failures_total`,
    /// `wharf_reconcile_duration_seconds`) in `registry`.
    pub fn register(registry: &mut Registry, component: &str) -> Self {
        let metrics = Self {
            component: component.to_owned(),
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            writes: Family::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles started",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            metrics.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            metrics.duration.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the API server, by kind of object",
            metrics.writes.clone(),
        );
        metrics
    }

    /// Counts one write request (create, apply, update, patch, delete) for an object of `kind`,
    /// so "an unchanged object reconciles with zero writes" can be measured.
    pub fn api_write(&self, kind: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                controller: self.component.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts a reconcile and times it until the returned timer is dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&self.label()).inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile under a short, stable reason (an error variant name).
    pub fn reconcile_failed(&self, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller: self.component.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    fn label(&self) -> ControllerLabel {
        ControllerLabel {
            controller: self.component.clone(),
        }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a ControllerMetrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.metrics.label())
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_labels() {
        let mut registry = Registry::with_prefix("wharf");
        let metrics = ControllerMetrics::register(&mut registry, "mirror-controller");
        drop(metrics.reconcile_started());
        metrics.reconcile_failed("MissingCredentials");
        metrics.api_write("Secret");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("wharf_reconciles_total{controller=\"mirror-controller\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wharf_reconcile_failures_total{controller=\"mirror-controller\",reason=\"MissingCredentials\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "wharf_reconcile_duration_seconds_count{controller=\"mirror-controller\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "wharf_api_writes_total{controller=\"mirror-controller\",kind=\"Secret\"} 1"
            ),
            "{text}"
        );
    }
}
