//! `GET /metrics`: the Prometheus text format (version 0.0.4), every series labelled with its
//! rule: per source, readings, bytes, late rows, dead letters, reconnects and watermark lag; per
//! rule, rows out, state bytes and checkpoints; per sink, rows, errors, alerts its throttle
//! held back and the alert latency histogram; for the service, rules
//! by state and refused requests.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use eddy_engine::metrics::EngineMetrics;

/// One rule's part: its name, state and, while it runs, its engine's counters.
pub struct RuleMetrics {
    pub name: String,
    pub state: String,
    pub engine: Option<Arc<EngineMetrics>>,
}

/// A metric family: its samples gathered, then written under one HELP and TYPE.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            sample(out, self.name, labels, value);
        }
    }
}

/// One line: `name{k="v",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, String)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Labels, in the order written.
type Labels = Vec<(&'static str, String)>;

/// One histogram: its labels, its buckets' bounds, and how many were at most each bound, the
/// count and the sum (as [`eddy_engine::metrics::LatencyHistogram::cumulative`] gives them).
type HistogramSeries = (Labels, &'static [f64], (Vec<u64>, u64, f64));

/// A histogram family: each series' buckets (`le`, cumulative), sum and count.
struct Histograms {
    name: &'static str,
    help: &'static str,
    series: Vec<HistogramSeries>,
}

impl Histograms {
    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let bucket = format!("{}_bucket", self.name);
        for (labels, bounds, (at_most, count, sum)) in &self.series {
            for (bound, n) in bounds.iter().zip(at_most) {
                let mut l = labels.clone();
                l.push(("le", bound.to_string()));
                sample(out, &bucket, &l, n);
            }
            let mut l = labels.clone();
            l.push(("le", "+Inf".to_string()));
            sample(out, &bucket, &l, count);
            sample(out, &format!("{}_sum", self.name), labels, sum);
            sample(out, &format!("{}_count", self.name), labels, count);
        }
    }
}

/// A label value as the text format wants it: backslash, quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(
    rules: &[RuleMetrics],
    unauthorized: u64,
    shared_connections: usize,
    now_millis: i64,
) -> String {
    let mut events = Family::new(
        "eddy_source_events_total",
        "counter",
        "Readings a source decoded (on time and late).",
    );
    let mut bytes = Family::new("eddy_source_bytes_total", "counter", "Bytes a source read.");
    let mut late = Family::new(
        "eddy_source_late_total",
        "counter",
        "Readings dropped as older than the watermark.",
    );
    let mut dead = Family::new(
        "eddy_source_dead_letters_total",
        "counter",
        "Messages a source could not decode, sent to its dead letters.",
    );
    let mut reconnects = Family::new(
        "eddy_source_reconnects_total",
        "counter",
        "Connections to a source's server made again after it went away.",
    );
    let mut lag = Family::new(
        "eddy_source_watermark_lag_seconds",
        "gauge",
        "Wall-clock time minus the source's watermark.",
    );
    let mut rows_out = Family::new(
        "eddy_rule_rows_out_total",
        "counter",
        "Rows (alerts) a rule's sinks wrote.",
    );
    let mut state_bytes = Family::new(
        "eddy_rule_state_bytes",
        "gauge",
        "The most memory a rule's queries held in state, as they estimate it.",
    );
    let mut checkpoints = Family::new(
        "eddy_rule_checkpoints_total",
        "counter",
        "Checkpoints a rule completed.",
    );
    let mut checkpoint_seconds = Family::new(
        "eddy_rule_checkpoint_duration_seconds",
        "gauge",
        "How long a rule's last checkpoint took.",
    );
    let mut checkpoint_bytes = Family::new(
        "eddy_rule_checkpoint_bytes",
        "gauge",
        "How large a rule's last checkpoint was.",
    );
    let mut sink_rows = Family::new("eddy_sink_rows_total", "counter", "Rows a sink wrote.");
    let mut sink_errors = Family::new(
        "eddy_sink_errors_total",
        "counter",
        "Writes a sink gave up on (their rows went to its dead letters).",
    );
    let mut suppressed = Family::new(
        "eddy_alerts_suppressed_total",
        "counter",
        "Alerts a sink's throttle held back (one alert per key per interval).",
    );
    let mut latency = Histograms {
        name: "eddy_alert_latency_seconds",
        help: "From the arrival of the reading that released alerts (its watermark closed a window, a session, a match) to the alerts handed to the sink, once per release.",
        series: Vec::new(),
    };
    let mut states = Family::new("eddy_rules", "gauge", "Rules by state.");
    let mut connections = Family::new(
        "eddy_shared_source_connections",
        "gauge",
        "Connections of the sources rules share: one per source, however many rules read it.",
    );
    let mut refused = Family::new(
        "eddy_http_unauthorized_total",
        "counter",
        "API requests refused for a missing or wrong token.",
    );

    let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
    for state in ["running", "paused", "failed", "stopped"] {
        by_state.insert(state, 0);
    }
    for rule in rules {
        *by_state.entry(rule.state.as_str()).or_default() += 1;
        let Some(m) = &rule.engine else { continue };
        let r = || ("rule", rule.name.clone());
        for s in &m.sources {
            let labels = || vec![r(), ("source", s.name.clone())];
            events.add(labels(), s.events.load(Relaxed) as f64);
            bytes.add(labels(), s.bytes_read.load(Relaxed) as f64);
            late.add(labels(), s.late.load(Relaxed) as f64);
            dead.add(labels(), s.dead_letters.load(Relaxed) as f64);
            reconnects.add(labels(), s.reconnects.load(Relaxed) as f64);
            if let Some(w) = s.watermark() {
                lag.add(labels(), (now_millis - w) as f64 / 1000.0);
            }
        }
        let mut out = 0;
        for s in &m.sinks {
            let labels = || vec![r(), ("sink", s.name.clone())];
            let rows = s.rows.load(Relaxed);
            out += rows;
            sink_rows.add(labels(), rows as f64);
            sink_errors.add(labels(), s.errors.load(Relaxed) as f64);
            suppressed.add(labels(), s.suppressed.load(Relaxed) as f64);
            latency.series.push((
                labels(),
                &eddy_engine::metrics::LATENCY_BOUNDS,
                s.alert_latency.cumulative(),
            ));
        }
        rows_out.add(vec![r()], out as f64);
        let state: u64 = m
            .queries
            .iter()
            .map(|q| q.peak_state_bytes.load(Relaxed))
            .sum();
        state_bytes.add(vec![r()], state as f64);
        checkpoints.add(vec![r()], m.checkpoints.completed.load(Relaxed) as f64);
        checkpoint_seconds.add(
            vec![r()],
            m.checkpoints.last_millis.load(Relaxed) as f64 / 1000.0,
        );
        checkpoint_bytes.add(vec![r()], m.checkpoints.last_bytes.load(Relaxed) as f64);
    }
    for (state, n) in by_state {
        states.add(vec![("state", state.to_string())], n as f64);
    }
    refused.add(Vec::new(), unauthorized as f64);
    connections.add(Vec::new(), shared_connections as f64);

    let mut text = String::new();
    for family in [
        &events,
        &bytes,
        &late,
        &dead,
        &reconnects,
        &lag,
        &rows_out,
        &state_bytes,
        &checkpoints,
        &checkpoint_seconds,
        &checkpoint_bytes,
        &sink_rows,
        &sink_errors,
        &suppressed,
        &states,
        &connections,
        &refused,
    ] {
        family.write(&mut text);
    }
    latency.write(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_written_once() {
        let text = render(
            &[
                RuleMetrics {
                    name: "a\"b\\c".into(),
                    state: "paused".into(),
                    engine: None,
                },
                RuleMetrics {
                    name: "x".into(),
                    state: "running".into(),
                    engine: None,
                },
            ],
            3,
            1,
            0,
        );
        assert_eq!(text.matches("# TYPE eddy_rules gauge").count(), 1);
        assert!(text.contains("eddy_rules{state=\"paused\"} 1"), "{text}");
        assert!(text.contains("eddy_rules{state=\"failed\"} 0"), "{text}");
        assert!(text.contains("eddy_http_unauthorized_total 3"), "{text}");
        assert!(text.contains("eddy_shared_source_connections 1"), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_alert_latency_is_a_histogram_prometheus_reads() {
        use eddy_engine::metrics::{CheckpointMetrics, SinkMetrics};
        use std::time::Duration;
        let sink = SinkMetrics::new("alerts");
        for ms in [3, 40, 40, 700] {
            sink.alert_latency.observe(Duration::from_millis(ms));
        }
        let engine = EngineMetrics {
            started: std::time::Instant::now(),
            sources: Vec::new(),
            sinks: vec![Arc::new(sink)],
            queries: Vec::new(),
            checkpoints: Arc::new(CheckpointMetrics::default()),
        };
        let text = render(
            &[RuleMetrics {
                name: "overheat".into(),
                state: "running".into(),
                engine: Some(Arc::new(engine)),
            }],
            0,
            0,
            0,
        );
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("the Prometheus text format");
        let histogram = scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h)
                    if s.metric == "eddy_alert_latency_seconds"
                        && s.labels.get("rule") == Some("overheat")
                        && s.labels.get("sink") == Some("alerts") =>
                {
                    Some(h.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram in {text}"));
        let at_most = |bound: f64| {
            histogram
                .iter()
                .find(|b| b.less_than == bound || (b.less_than - bound).abs() < 1e-9)
                .map(|b| b.count)
        };
        assert_eq!(at_most(0.005), Some(1.0), "{text}");
        assert_eq!(at_most(0.05), Some(3.0), "{text}");
        assert_eq!(at_most(1.0), Some(4.0), "{text}");
        assert_eq!(at_most(f64::INFINITY), Some(4.0), "{text}");
        assert!(
            text.contains("eddy_alert_latency_seconds_count{rule=\"overheat\",sink=\"alerts\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "eddy_alert_latency_seconds_sum{rule=\"overheat\",sink=\"alerts\"} 0.783"
            ),
            "{text}"
        );
    }
}
