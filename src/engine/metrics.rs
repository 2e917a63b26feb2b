//! The engine's counters through the `metrics` facade, so the host's
//! exporter (Prometheus, StatsD, OpenTelemetry, ...) publishes them: see
//! docs/OPERATIONS.md, "Metrics and traces", for every name.
//!
//! The decision path counts into the engine's own striped counters (no
//! facade call per decision); [`Engine::report_metrics`] copies them to
//! the facade as absolute values, as often as the host scrapes. Calls to
//! the shared state store and the outcome buffer report to the facade
//! directly (`nextbest_store_seconds`, `nextbest_store_call_errors_total`,
//! `nextbest_outcomes_buffered_total`, `nextbest_outcomes_dropped_total`).

use super::{Engine, EngineStats};

impl Engine {
    /// Publish the engine's counters to the `metrics` facade's recorder
    /// (a no-op without one): call it from the exporter's scrape or a
    /// timer. Returns the stats it published.
    pub fn report_metrics(&self) -> EngineStats {
        let s = self.stats();
        let counter = |name: &'static str, v: u64| metrics::counter!(name).absolute(v);
        for (arm, n) in [
            ("champion", s.decisions.champion),
            ("challenger", s.decisions.challenger),
            ("control", s.decisions.control),
        ] {
            metrics::counter!("nextbest_decisions_total", "arm" => arm).absolute(n);
        }
        counter("nextbest_decision_errors_total", s.decision_errors);
        counter("nextbest_outcomes_total", s.outcomes);
        counter("nextbest_duplicate_outcomes_total", s.duplicate_outcomes);
        counter(
            "nextbest_outcomes_without_context_total",
            s.outcomes_without_context,
        );
        counter("nextbest_script_errors_total", s.script_errors);
        counter("nextbest_store_errors_total", s.store_errors);
        counter("nextbest_loads_succeeded_total", s.loads_succeeded);
        counter("nextbest_loads_failed_total", s.loads_failed);
        metrics::gauge!("nextbest_live_version").set(s.current.version as f64);
        if let Some(log) = &s.log {
            counter("nextbest_log_records_written_total", log.written);
            counter("nextbest_log_records_synced_total", log.synced);
            counter("nextbest_log_records_lost_total", log.lost);
            counter("nextbest_log_records_dropped_total", log.dropped);
            counter("nextbest_log_records_refused_total", log.refused);
            counter("nextbest_log_errors_total", log.errors);
        }
        if let Some(f) = &s.fleet {
            metrics::gauge!("nextbest_outcomes_waiting").set(f.outcomes_waiting as f64);
            counter("nextbest_outcomes_delivered_total", f.outcomes_delivered);
            counter("nextbest_learning_exchanges_total", f.learning_exchanges);
            counter("nextbest_learning_errors_total", f.learning_errors);
        }
        s
    }
}
