//! Counters the SPU exposes in Prometheus' text format.
//!
//! Per-topic produce counts are kept in a map behind a mutex, taken once per
//! request after it is answered; the guard's own counters stay lock-free.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use mg_guard::GuardStats;

/// The SPU's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// topic -> error code -> partition entries answered with it (0 = accepted).
    produce: Mutex<BTreeMap<String, BTreeMap<i16, u64>>>,
    bytes_written: AtomicU64,
    open_connections: AtomicI64,
    malformed_frames: AtomicU64,
    connections_refused: AtomicU64,
}

impl Metrics {
    /// Adds the outcomes of one produce request: (topic, code, entries).
    pub fn record_produce<'a>(
        &self,
        outcomes: impl IntoIterator<Item = (&'a str, i16, u64)>,
        bytes: u64,
    ) {
        let mut produce = self.produce.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, code, n) in outcomes {
            // Looked up by &str: a topic's name is copied only the first time.
            match produce.get_mut(topic) {
                Some(codes) => *codes.entry(code).or_default() += n,
                None => {
                    produce.insert(topic.to_string(), BTreeMap::from([(code, n)]));
                }
            }
        }
        drop(produce);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.open_connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// A frame could not be decoded.
    pub fn malformed(&self) {
        self.malformed_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused at the connection limit so far.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.load(Ordering::Relaxed)
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Malformed frames so far.
    pub fn malformed_frames(&self) -> u64 {
        self.malformed_frames.load(Ordering::Relaxed)
    }

    /// Entries answered with `code` for `topic` so far.
    pub fn produce_count(&self, topic: &str, code: i16) -> u64 {
        let produce = self.produce.lock().unwrap_or_else(|p| p.into_inner());
        produce
            .get(topic)
            .and_then(|codes| codes.get(&code))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, guard: &GuardStats) -> String {
        let mut out = String::new();
        let produce = self
            .produce
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.push_str("# HELP mirror_guard_produce_accepted_total Partition entries written.\n");
        out.push_str("# TYPE mirror_guard_produce_accepted_total counter\n");
        for (topic, codes) in &produce {
            if let Some(n) = codes.get(&0) {
                let _ = writeln!(
                    out,
                    "mirror_guard_produce_accepted_total{{topic=\"{}\"}} {n}",
                    escape(topic)
                );
            }
        }
        out.push_str("# HELP mirror_guard_produce_rejected_total Partition entries refused, by error code.\n");
        out.push_str("# TYPE mirror_guard_produce_rejected_total counter\n");
        for (topic, code, n) in produce
            .iter()
            .flat_map(|(topic, codes)| codes.iter().map(move |(code, n)| (topic, code, n)))
        {
            if *code != 0 {
                let _ = writeln!(
                    out,
                    "mirror_guard_produce_rejected_total{{topic=\"{}\",code=\"{code}\"}} {n}",
                    escape(topic)
                );
            }
        }
        let guard = guard.snapshot();
        let gauges: [(&str, &str, &str, String); 7] = [
            (
                "mirror_guard_bytes_written_total",
                "counter",
                "Record bytes appended to partition logs.",
                self.bytes_written.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mirror_guard_open_connections",
                "gauge",
                "Client connections open now.",
                self.open_connections().to_string(),
            ),
            (
                "mirror_guard_malformed_frames_total",
                "counter",
                "Frames that could not be decoded.",
                self.malformed_frames().to_string(),
            ),
            (
                "mirror_guard_connections_refused_total",
                "counter",
                "Connections refused at the connection limit.",
                self.connections_refused().to_string(),
            ),
            (
                "mirror_guard_guard_rejected_from_home_total",
                "counter",
                "Entries refused with MirrorProduceFromHome (11003).",
                guard.from_home.to_string(),
            ),
            (
                "mirror_guard_guard_rejected_remote_target_total",
                "counter",
                "Entries refused with MirrorProduceFromRemoteNotAllowed (11006).",
                guard.remote_target.to_string(),
            ),
            (
                "mirror_guard_guard_rejected_not_leader_total",
                "counter",
                "Entries refused with NotLeaderForPartition (6).",
                guard.not_leader.to_string(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

impl mg_transport::server::AcceptObserver for Metrics {
    fn refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
