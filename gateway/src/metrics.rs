//! Per-method call counts and latency histograms, by status code, in the
//! Prometheus text format. Methods are the contracts' own: a path no
//! contract has is counted as `other`, so a client cannot grow the label set.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use prost_reflect::DescriptorPool;

use crate::service::code_name;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The label of a call's outcome: a gRPC code name, or `CANCELLED` for an
/// answer that ended without a status (the client went away).
pub(crate) type Outcome = Option<i32>;

pub(crate) struct RpcMetrics {
    /// `/pkg.Service/Method` of every contract method, to its index.
    methods: HashMap<String, usize>,
    names: Vec<String>,
    calls: Mutex<HashMap<(usize, i32), Histogram>>,
}

impl RpcMetrics {
    pub(crate) fn new() -> Self {
        let mut pool = DescriptorPool::new();
        let mut names = Vec::new();
        for set in [
            focusforge_proto::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ] {
            // The sets are the build's own; a failure leaves only `other`.
            let _ = pool.decode_file_descriptor_set(set);
        }
        for service in pool.services() {
            for method in service.methods() {
                names.push(format!("/{}/{}", service.full_name(), method.name()));
            }
        }
        names.push("other".into());
        let methods = names
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        Self {
            methods,
            names,
            calls: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn record(&self, path: &str, outcome: Outcome, elapsed: Duration) {
        let method = self
            .methods
            .get(path)
            .copied()
            .unwrap_or(self.names.len() - 1);
        let code = outcome.unwrap_or(1);
        let secs = elapsed.as_secs_f64();
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let h = calls.entry((method, code)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The histograms in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        let calls: BTreeMap<(usize, i32), Histogram> = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
        out.push_str(
            "# HELP focusforge_rpc_duration_seconds Calls through the gateway by method and status code, until the answer ended.\n\
             # TYPE focusforge_rpc_duration_seconds histogram\n",
        );
        for ((method, code), h) in &calls {
            let labels = format!(
                "method=\"{}\",code=\"{}\"",
                self.names[*method],
                code_name(*code)
            );
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "focusforge_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "focusforge_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "focusforge_rpc_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "focusforge_rpc_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_are_other_and_buckets_are_cumulative() {
        let m = RpcMetrics::new();
        let get = "/focusforge.tasks.v1.TaskService/GetTask";
        m.record(get, Some(0), Duration::from_millis(3));
        m.record(get, Some(5), Duration::from_millis(30));
        m.record(
            "/focusforge.tasks.v1.TaskService/Nope",
            Some(12),
            Duration::ZERO,
        );
        m.record("/made.Up/x", Some(12), Duration::ZERO);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains(&format!(
            "focusforge_rpc_duration_seconds_bucket{{method=\"{get}\",code=\"OK\",le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "focusforge_rpc_duration_seconds_bucket{{method=\"{get}\",code=\"OK\",le=\"0.0025\"}} 0"
        )));
        assert!(text.contains(&format!(
            "focusforge_rpc_duration_seconds_count{{method=\"{get}\",code=\"NOT_FOUND\"}} 1"
        )));
        assert!(text.contains(
            "focusforge_rpc_duration_seconds_count{method=\"other\",code=\"UNIMPLEMENTED\"} 2"
        ));
        assert!(!text.contains("made.Up"));
    }
}
