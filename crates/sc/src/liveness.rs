//! Liveness: which SPUs have a control-plane session now, and the offsets
//! their leaders last reported. Runtime state only: never persisted.

use std::collections::BTreeMap;

use fluvio_controlplane_metadata::mirror::MirrorStatus;
use mg_controlplane::operate::MirrorLinkReport;
use std::time::Instant;

/// A leader's last report of a mirror partition's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSeen {
    /// The SPU that reported it.
    pub spu: i32,
    /// What it said.
    pub report: MirrorLinkReport,
    /// When.
    pub at: Instant,
}

/// Sessions and reports, as the SPUs send them.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Open control-plane sessions per SPU.
    online: BTreeMap<i32, usize>,
    /// Offsets the leaders last reported: (hw, leo, size).
    offsets: BTreeMap<(String, u32), (i64, i64, i64)>,
    /// Each mirror object's pairing: the SC's side (its MirrorConnect
    /// stream) and the SPUs' (their links), as Fluvio's MirrorStatus.
    mirrors: BTreeMap<String, MirrorStatus>,
    /// Mirror partitions' links, as their leaders last reported them.
    links: BTreeMap<(String, u32), LinkSeen>,
}

impl Liveness {
    /// Counts a session up or down; returns whether the SPU's standing
    /// (online or not) changed.
    pub fn session(&mut self, id: i32, up: bool) -> bool {
        let sessions = self.online.entry(id).or_insert(0);
        let before = *sessions;
        *sessions = if up {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let changed = (before == 0) != (*sessions == 0);
        if *sessions == 0 {
            self.online.remove(&id);
        }
        changed
    }

    /// Whether an SPU has a session now.
    pub fn is_online(&self, id: i32) -> bool {
        self.online.contains_key(&id)
    }

    /// Records a leader's report.
    pub fn report(&mut self, topic: &str, partition: u32, offsets: (i64, i64, i64)) {
        self.offsets.insert((topic.to_string(), partition), offsets);
    }

    /// The last report of a partition.
    pub fn offsets(&self, topic: &str, partition: u32) -> Option<(i64, i64, i64)> {
        self.offsets.get(&(topic.to_string(), partition)).copied()
    }

    /// Merges the SC's view of a mirror's pairing; returns whether the
    /// pairing changed (not only its last-seen time).
    pub fn mirror_from_sc(&mut self, mirror: &str, status: MirrorStatus) -> bool {
        let entry = self.mirrors.entry(mirror.to_string()).or_default();
        let before = (entry.pairing_sc.clone(), entry.connection_status.clone());
        entry.merge_from_sc(status);
        before != (entry.pairing_sc.clone(), entry.connection_status.clone())
    }

    /// Merges an SPU's view of a mirror's pairing; returns whether the
    /// pairing changed.
    pub fn mirror_from_spu(&mut self, mirror: &str, status: MirrorStatus) -> bool {
        let entry = self.mirrors.entry(mirror.to_string()).or_default();
        let before = entry.pairing_spu.clone();
        entry.merge_from_spu(status);
        before != entry.pairing_spu
    }

    /// A mirror's pairing, as last heard.
    pub fn mirror(&self, mirror: &str) -> MirrorStatus {
        self.mirrors.get(mirror).cloned().unwrap_or_default()
    }

    /// Forgets a mirror object's pairing (it was removed).
    pub fn forget_mirror(&mut self, mirror: &str) {
        self.mirrors.remove(mirror);
    }

    /// Forgets a deleted partition's report, so a partition created again
    /// under its name shows only what its leader reports anew.
    pub fn forget(&mut self, topic: &str, partition: u32) {
        self.offsets.remove(&(topic.to_string(), partition));
        self.links.remove(&(topic.to_string(), partition));
    }

    /// Records a leader's report of a mirror partition's link; returns
    /// whether something a waiter cares about changed (the epoch, the
    /// connection, the lag), not only counters and times.
    pub fn link(
        &mut self,
        spu: i32,
        topic: &str,
        partition: u32,
        report: MirrorLinkReport,
    ) -> bool {
        let key = (topic.to_string(), partition);
        let before = self.links.get(&key).map(|seen| {
            (
                seen.spu,
                seen.report.epoch,
                seen.report.connected,
                seen.report.lag,
            )
        });
        let now = (spu, report.epoch, report.connected, report.lag);
        self.links.insert(
            key,
            LinkSeen {
                spu,
                report,
                at: Instant::now(),
            },
        );
        before != Some(now)
    }

    /// A mirror partition's link, as last reported.
    pub fn link_of(&self, topic: &str, partition: u32) -> Option<LinkSeen> {
        self.links.get(&(topic.to_string(), partition)).cloned()
    }
}
