//! Counters the SPU exposes on `/metrics`, through `prometheus-client`.
//!
//! Per-topic produce counts are kept in a map behind a mutex, taken once per
//! request after it is answered; the guard's own counters stay lock-free.
//! At scrape time a collector reads them all into the registry's encoder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mg_guard::GuardStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

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

    /// The exposition of every metric, in the OpenMetrics text format
    /// (which Prometheus scrapes), written by `prometheus-client`.
    pub fn render(self: &Arc<Self>, guard: &GuardStats) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition {
            metrics: Arc::clone(self),
            guard: guard.clone(),
        }));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Reads the counters at scrape time. They are kept in plain atomics and a
/// map keyed by `&str` so that counting allocates nothing on the produce
/// path; this collector hands them to `prometheus-client`'s registry and
/// encoder.
#[derive(Debug)]
struct Exposition {
    metrics: Arc<Metrics>,
    guard: GuardStats,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let produce = m.produce.lock().unwrap_or_else(|p| p.into_inner()).clone();
        {
            let mut family = encoder.encode_descriptor(
                "mirror_guard_produce_accepted",
                "Partition entries written.",
                None,
                MetricType::Counter,
            )?;
            for (topic, codes) in &produce {
                if let Some(n) = codes.get(&0) {
                    let labels = [("topic", topic.as_str())];
                    ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "mirror_guard_produce_rejected",
                "Partition entries refused, by error code.",
                None,
                MetricType::Counter,
            )?;
            for (topic, codes) in &produce {
                for (code, n) in codes.iter().filter(|(code, _)| **code != 0) {
                    let code = code.to_string();
                    let labels = [("topic", topic.as_str()), ("code", code.as_str())];
                    ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        counter(
            &mut encoder,
            "mirror_guard_bytes_written",
            "Record bytes appended to partition logs.",
            m.bytes_written.load(Ordering::Relaxed),
        )?;
        let open = encoder.encode_descriptor(
            "mirror_guard_open_connections",
            "Client connections open now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(m.open_connections()).encode(open)?;
        counter(
            &mut encoder,
            "mirror_guard_malformed_frames",
            "Frames that could not be decoded, or stalled past the read deadline.",
            m.malformed_frames(),
        )?;
        counter(
            &mut encoder,
            "mirror_guard_connections_refused",
            "Connections refused at the connection limit.",
            m.connections_refused(),
        )?;
        let guard = self.guard.snapshot();
        counter(
            &mut encoder,
            "mirror_guard_guard_rejected_from_home",
            "Entries refused with MirrorProduceFromHome (11003).",
            guard.from_home,
        )?;
        counter(
            &mut encoder,
            "mirror_guard_guard_rejected_remote_target",
            "Entries refused with MirrorProduceFromRemoteNotAllowed (11006).",
            guard.remote_target,
        )?;
        counter(
            &mut encoder,
            "mirror_guard_guard_rejected_not_leader",
            "Entries refused with NotLeaderForPartition (6).",
            guard.not_leader,
        )
    }
}

impl mg_transport::server::AcceptObserver for Metrics {
    fn refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
}
