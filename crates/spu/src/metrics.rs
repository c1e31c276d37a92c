//! Counters the SPU exposes on `/metrics`, through `prometheus-client`.
//!
//! Per-topic produce counts are kept in a map behind a mutex, taken once per
//! request after it is answered; the guard's own counters stay lock-free.
//! At scrape time a collector reads them all into the registry's encoder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mg_guard::GuardStats;
use mg_storage::SyncPacing;
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
    /// (remote, topic, partition, role) -> the link's counters.
    links: Mutex<BTreeMap<LinkKey, Arc<LinkStats>>>,
    /// Why mirror connections were refused -> how many.
    mirror_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Produce entries the guard refused, by topic, code and client id.
    refusals: crate::refusals::Refusals,
}

/// A mirror link's labels: the remote cluster's id, the partition on this
/// side, and whether this side sends or receives.
type LinkKey = (String, String, u32, &'static str);

/// One mirror link's counters, for one partition on this SPU.
#[derive(Debug, Default)]
pub struct LinkStats {
    connected: AtomicBool,
    sessions: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    lag: AtomicI64,
    refused: AtomicU64,
    last_seen_ms: AtomicU64,
}

impl LinkStats {
    /// When the peer was last heard, ms since the Unix epoch (0: never).
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
    /// The peer was heard just now.
    pub(crate) fn seen(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_seen_ms.store(now, Ordering::Relaxed);
    }
    /// Whether the link is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// Times the link came up (a reconnect counts again).
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }
    /// Records mirrored (sent or appended) so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    /// Record bytes mirrored so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// The sender's log end minus the receiver's, as last seen.
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }
    /// Batches refused (misaligned, corrupt or fenced) so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    pub(crate) fn set_connected(&self, up: bool) {
        if up {
            self.sessions.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(up, Ordering::Relaxed);
    }
    pub(crate) fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// The lag as last seen; -1 while it is unknown (a new link).
    pub(crate) fn set_lag(&self, lag: i64) {
        self.lag.store(lag.max(-1), Ordering::Relaxed);
    }
    pub(crate) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
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

    /// The counters of a mirror link (created on first use): `remote` is
    /// the remote cluster's id, `role` "receiver" or "sender".
    pub fn link(
        &self,
        remote: &str,
        topic: &str,
        partition: u32,
        role: &'static str,
    ) -> Arc<LinkStats> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let key = (remote.to_string(), topic.to_string(), partition, role);
        Arc::clone(links.entry(key).or_default())
    }

    /// The counters of every link of a partition (either role).
    pub fn links_of(&self, topic: &str, partition: u32) -> Vec<Arc<LinkStats>> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .iter()
            .filter(|((_, t, p, _), _)| t == topic && *p == partition)
            .map(|(_, stats)| Arc::clone(stats))
            .collect()
    }

    /// Produce entries refused, by whom: see [`Refusals`](crate::refusals::Refusals).
    pub fn refusals(&self) -> &crate::refusals::Refusals {
        &self.refusals
    }

    /// A mirror connection was refused at its handshake.
    pub fn mirror_refused(&self, reason: &'static str) {
        let mut refused = self
            .mirror_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *refused.entry(reason).or_default() += 1;
    }

    /// Mirror connections refused for `reason` so far.
    pub fn mirror_refused_count(&self, reason: &str) -> u64 {
        let refused = self
            .mirror_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        refused.get(reason).copied().unwrap_or(0)
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
    pub fn render(self: &Arc<Self>, guard: &GuardStats, pacing: SyncPacing) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition {
            metrics: Arc::clone(self),
            guard: guard.clone(),
            pacing,
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
    /// The store's pacing of big syncs, read when the scrape began.
    pacing: SyncPacing,
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
        let pause = encoder.encode_descriptor(
            "mirror_guard_sync_pause_seconds",
            "Pause between two chunks of big syncs, paced for small commits (--flush-target-us).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.pacing.pause.as_secs_f64()).encode(pause)?;
        counter(
            &mut encoder,
            "mirror_guard_small_commits_late",
            "Small commits that took longer than --flush-target-us.",
            self.pacing.late_small_commits,
        )?;
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
        encode_links(&mut encoder, m)?;
        {
            let mut family = encoder.encode_descriptor(
                "mirror_guard_produce_refused",
                "Produce entries the guard refused, by topic, code and client id.",
                None,
                MetricType::Counter,
            )?;
            for (topic, code, client, n) in m.refusals.all() {
                let code = code.to_string();
                let labels = [
                    ("topic", topic.as_str()),
                    ("code", code.as_str()),
                    ("client_id", client.as_str()),
                ];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
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

/// The mirror links' families.
fn encode_links(encoder: &mut DescriptorEncoder, m: &Metrics) -> Result<(), std::fmt::Error> {
    let links: Vec<(LinkKey, Arc<LinkStats>)> = {
        let links = m.links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    };
    type Read = fn(&LinkStats) -> i64;
    let families: [(&str, &str, MetricType, Read); 6] = [
        (
            "mirror_guard_mirror_sessions",
            "Times the mirror link came up; more than one means it reconnected.",
            MetricType::Counter,
            |l| l.sessions() as i64,
        ),
        (
            "mirror_guard_mirror_records",
            "Records mirrored, sent or appended, per remote and partition.",
            MetricType::Counter,
            |l| l.records() as i64,
        ),
        (
            "mirror_guard_mirror_bytes",
            "Record bytes mirrored, sent or appended, per remote and partition.",
            MetricType::Counter,
            |l| l.bytes() as i64,
        ),
        (
            "mirror_guard_mirror_lag_records",
            "Sender log end minus receiver log end, as last seen; -1 until a new link hears it.",
            MetricType::Gauge,
            |l| l.lag(),
        ),
        (
            "mirror_guard_mirror_connected",
            "1 while the mirror link is up.",
            MetricType::Gauge,
            |l| i64::from(l.connected()),
        ),
        (
            "mirror_guard_mirror_refused_batches",
            "Mirrored batches refused: misaligned, corrupt, or fenced by a newer mirror epoch.",
            MetricType::Counter,
            |l| l.refused() as i64,
        ),
    ];
    for (name, help, kind, read) in families {
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for ((remote, topic, partition, role), link) in &links {
            let partition = partition.to_string();
            let labels = [
                ("remote", remote.as_str()),
                ("topic", topic.as_str()),
                ("partition", partition.as_str()),
                ("role", *role),
            ];
            let value = read(link);
            match kind {
                MetricType::Counter => {
                    ConstCounter::new(value.max(0) as u64).encode(family.encode_family(&labels)?)?
                }
                _ => ConstGauge::new(value).encode(family.encode_family(&labels)?)?,
            }
        }
    }
    let refused = m
        .mirror_refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut family = encoder.encode_descriptor(
        "mirror_guard_mirror_connections_refused",
        "Mirror connections refused at their handshake, by reason.",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in refused {
        ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

impl mg_transport::server::AcceptObserver for Metrics {
    fn refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
}
