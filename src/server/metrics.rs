//! Prometheus metrics (prometheus-client). Labels are endpoints, kinds and
//! decisions: never names, users or anything read from secret data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

use crate::admission::{Decision, Endpoint};
use crate::model::workload::WorkloadKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    kind: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// Every metric credgate exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    http_errors: Family<StatusLabels, Counter>,
    in_flight: Gauge,
    tls_reloads: Counter,
    tls_reload_failures: Counter,
    certificate_expiry: Gauge,
    /// Unix time when the serving certificate in use expires (0: unknown).
    certificate_not_after: std::sync::atomic::AtomicI64,
}

/// The kind as a label value: `Secret`, a workload kind of the table, else
/// `other`, so a caller cannot grow the label set without bound.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Secret" => "Secret",
        _ => WorkloadKind::from_name(kind).map_or("other", WorkloadKind::as_str),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("credgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by endpoint, kind and decision",
            requests.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
        });
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to an encoded answer",
            duration.clone(),
        );
        let http_errors = Family::<StatusLabels, Counter>::default();
        registry.register(
            "http_errors",
            "Webhook HTTP answers other than 200, by status",
            http_errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Webhook requests being received or answered",
            in_flight.clone(),
        );
        let tls_reloads = Counter::default();
        registry.register(
            "tls_reloads",
            "Serving certificates loaded after a change of the files",
            tls_reloads.clone(),
        );
        let tls_reload_failures = Counter::default();
        registry.register(
            "tls_reload_failures",
            "Changed certificate files that could not be loaded (the previous certificate stays)",
            tls_reload_failures.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the serving certificate in use expires",
            certificate_expiry.clone(),
        );
        Metrics {
            registry,
            certificate_expiry,
            certificate_not_after: Default::default(),
            requests,
            duration,
            http_errors,
            in_flight,
            tls_reloads,
            tls_reload_failures,
        }
    }
}

impl Metrics {
    pub fn admission(&self, endpoint: Endpoint, kind: &str, decision: Decision, elapsed: Duration) {
        let kind = kind_label(kind);
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                kind: kind.to_owned(),
                decision: decision.as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn http_error(&self, status: u16) {
        self.http_errors
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn tls_reloaded(&self, ok: bool) {
        if ok {
            &self.tls_reloads
        } else {
            &self.tls_reload_failures
        }
        .inc();
    }

    /// Records when the serving certificate now in use expires (unix seconds).
    pub fn certificate_loaded(&self, not_after: i64) {
        self.certificate_not_after
            .store(not_after, std::sync::atomic::Ordering::Relaxed);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let not_after = self
            .certificate_not_after
            .load(std::sync::atomic::Ordering::Relaxed);
        if not_after != 0 {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            self.certificate_expiry.set(not_after - now);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_do_not_grow_labels() {
        let m = Metrics::default();
        m.admission(
            Endpoint::Validate,
            "Secret",
            Decision::Denied,
            Duration::from_micros(30),
        );
        m.admission(
            Endpoint::Validate,
            "Whatever-1",
            Decision::Denied,
            Duration::from_micros(30),
        );
        m.admission(
            Endpoint::Validate,
            "Whatever-2",
            Decision::Denied,
            Duration::from_micros(30),
        );
        let text = m.encode();
        assert!(text.contains(r#"credgate_admission_requests_total{endpoint="validate",kind="Secret",decision="denied"} 1"#), "{text}");
        assert!(
            text.contains(r#"kind="other",decision="denied"} 2"#),
            "{text}"
        );
        assert!(!text.contains("Whatever"));
    }
}
