//! The mirror control of each led partition, as the SC last pushed it
//! (UpdateReplica v19, [`MirrorControl`]): its epoch, whether its link is
//! paused, whether mirroring ended, and the epoch this SPU fenced its log
//! at. Links read it when they are admitted or dialed; the control plane
//! writes it, fencing the log before it reports the new epoch.
//!
//! Under an SC that sends no controls (Fluvio's, or below v19) every
//! partition stays at epoch 0, never paused: mirroring as Fluvio runs it.

use std::collections::HashMap;
use std::sync::Mutex;

use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use mg_controlplane::operate::MirrorControl;

/// One partition's control.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionControl {
    /// What the SC pushed.
    pub control: MirrorControl,
    /// The role mirroring had before it ended: names what the fence refuses.
    pub former: Option<PartitionMirrorConfig>,
    /// The epoch the log is fenced at (reported to the SC once reached).
    pub fenced: u32,
}

/// Every led partition's control, by (topic, partition).
#[derive(Debug, Default)]
pub struct Controls {
    partitions: Mutex<HashMap<(String, u32), PartitionControl>>,
}

impl Controls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), PartitionControl>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition's control (epoch 0, running, if the SC sent none).
    pub fn get(&self, topic: &str, partition: u32) -> PartitionControl {
        self.lock()
            .get(&(topic.to_string(), partition))
            .cloned()
            .unwrap_or_default()
    }

    /// Records what the SC pushed for a partition; returns the epoch to
    /// fence at, if it is newer than the fence.
    pub fn set(
        &self,
        topic: &str,
        partition: u32,
        control: MirrorControl,
        former: Option<PartitionMirrorConfig>,
    ) -> Option<u32> {
        let mut partitions = self.lock();
        let entry = partitions
            .entry((topic.to_string(), partition))
            .or_default();
        entry.control = control;
        entry.former = if control.ended { former } else { None };
        (control.epoch > entry.fenced).then_some(control.epoch)
    }

    /// The log is fenced at `epoch` now.
    pub fn fenced(&self, topic: &str, partition: u32, epoch: u32) {
        if let Some(entry) = self.lock().get_mut(&(topic.to_string(), partition)) {
            entry.fenced = entry.fenced.max(epoch);
        }
    }

    /// Keeps only the partitions in `led` (a full sync lists them all).
    pub fn retain(&self, led: impl Fn(&str, u32) -> bool) {
        self.lock()
            .retain(|(topic, partition), _| led(topic, *partition));
    }

    /// Forgets a partition (no longer led, or deleted).
    pub fn forget(&self, topic: &str, partition: u32) {
        self.lock().remove(&(topic.to_string(), partition));
    }

    /// The partition whose mirroring with `remote`'s `replica` ended, if
    /// one did: a link asking for it is fenced, not unknown.
    pub fn ended_for(&self, remote: &str, replica: &str) -> Option<(String, u32, u32)> {
        self.lock()
            .iter()
            .find_map(|((topic, partition), c)| match &c.former {
                Some(PartitionMirrorConfig::Home(home))
                    if home.remote_cluster == remote && home.remote_replica == replica =>
                {
                    Some((topic.clone(), *partition, c.control.epoch))
                }
                _ => None,
            })
    }

    /// Every partition with a control, and it.
    pub fn all(&self) -> Vec<((String, u32), PartitionControl)> {
        self.lock()
            .iter()
            .map(|(key, control)| (key.clone(), control.clone()))
            .collect()
    }
}
