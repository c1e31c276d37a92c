//! Liveness: which SPUs have a control-plane session now, and the offsets
//! their leaders last reported. Runtime state only: never persisted.

use std::collections::BTreeMap;

use fluvio_controlplane_metadata::mirror::MirrorStatus;

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
    }
}
