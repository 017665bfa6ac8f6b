//! Prometheus metrics for `/metrics`, rendered by hand in the text exposition format (0.0.4):
//! requests per route and status, ledger submit latency per contract function, and transaction
//! results. Hand-rendered because the set is small and fixed; a metrics crate would add more
//! than it saves.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the submit-latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Count per bucket (not cumulative; cumulated when rendered).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (method, route, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// function → latency of submissions that reached the ledger.
    submit_latency: BTreeMap<String, Histogram>,
    /// (function, result) → count.
    transactions: BTreeMap<(String, &'static str), u64>,
}

/// The gateway's counters. One std mutex: every update is a few map operations and is never
/// held across an await, so contention stays far below the cost of a ledger commit.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner
                .requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
    }

    /// One submission of `function` that took `elapsed` and ended with `result`
    /// (`committed`, `rejected`, `conflict`, `unavailable` or `error`).
    pub fn submitted(&self, function: &str, elapsed: Duration, result: &'static str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .submit_latency
                .entry(function.to_owned())
                .or_default()
                .observe(elapsed.as_secs_f64());
            *inner
                .transactions
                .entry((function.to_owned(), result))
                .or_default() += 1;
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let Ok(inner) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        out.push_str("# HELP tom_http_requests_total HTTP requests by route and status.\n# TYPE tom_http_requests_total counter\n");
        for ((method, route, status), n) in &inner.requests {
            let _ = writeln!(out, "tom_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        out.push_str("# HELP tom_ledger_transactions_total Ledger transactions submitted, by contract function and result.\n# TYPE tom_ledger_transactions_total counter\n");
        for ((function, result), n) in &inner.transactions {
            let _ = writeln!(
                out,
                "tom_ledger_transactions_total{{function=\"{function}\",result=\"{result}\"}} {n}"
            );
        }
        let committed: u64 = inner
            .transactions
            .iter()
            .filter(|((_, r), _)| *r == "committed")
            .map(|(_, n)| n)
            .sum();
        out.push_str("# HELP tom_ledger_committed_total Transactions committed through this gateway.\n# TYPE tom_ledger_committed_total counter\n");
        let _ = writeln!(out, "tom_ledger_committed_total {committed}");
        out.push_str("# HELP tom_ledger_submit_seconds Time from submission to commit (or refusal), by contract function.\n# TYPE tom_ledger_submit_seconds histogram\n");
        for (function, h) in &inner.submit_latency {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(out, "tom_ledger_submit_seconds_bucket{{function=\"{function}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "tom_ledger_submit_seconds_bucket{{function=\"{function}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tom_ledger_submit_seconds_sum{{function=\"{function}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tom_ledger_submit_seconds_count{{function=\"{function}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.submitted("RecordData", Duration::from_micros(300), "committed");
        m.submitted("RecordData", Duration::from_millis(3), "rejected");
        m.request("POST", "/v1/data", 201);
        let text = m.render();
        assert!(
            text.contains(
                "tom_ledger_submit_seconds_bucket{function=\"RecordData\",le=\"0.0005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tom_ledger_submit_seconds_bucket{function=\"RecordData\",le=\"0.005\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("tom_ledger_submit_seconds_count{function=\"RecordData\"} 2\n"));
        assert!(text.contains("tom_ledger_committed_total 1\n"));
        assert!(text.contains(
            "tom_http_requests_total{method=\"POST\",route=\"/v1/data\",status=\"201\"} 1\n"
        ));
    }
}
