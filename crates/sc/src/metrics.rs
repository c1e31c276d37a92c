//! The SC's counters on `/metrics` (`--metrics-port`): mirroring streams
//! open, and mirror connections refused, by reason, so that an operator can
//! see an impostor or a revoked remote knocking.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The SC's counters.
#[derive(Debug, Default)]
pub struct ScMetrics {
    refused: Mutex<BTreeMap<&'static str, u64>>,
    streams: AtomicI64,
}

impl ScMetrics {
    /// A mirroring connection was refused.
    pub fn mirror_refused(&self, reason: &'static str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *refused.entry(reason).or_default() += 1;
    }

    /// Mirroring connections refused for `reason` so far.
    pub fn mirror_refused_count(&self, reason: &str) -> u64 {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.get(reason).copied().unwrap_or(0)
    }

    /// A remote's stream opened (`+1`) or ended (`-1`).
    pub fn streams(&self, delta: i64) {
        self.streams.fetch_add(delta, Ordering::Relaxed);
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition {
            refused: self
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            streams: self.streams.load(Ordering::Relaxed),
        }));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[derive(Debug)]
struct Exposition {
    refused: BTreeMap<&'static str, u64>,
    streams: i64,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "mirror_guard_sc_mirror_connections_refused",
            "MirrorConnect streams refused, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &self.refused {
            ConstCounter::new(*n).encode(family.encode_family(&[("reason", *reason)])?)?;
        }
        let streams = encoder.encode_descriptor(
            "mirror_guard_sc_mirroring_streams",
            "Remote SCs streaming their topics from this home now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.streams).encode(streams)
    }
}
