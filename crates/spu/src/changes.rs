//! What changed in the logs, for whoever waits on it: each partition's log
//! end (streams wake on it) and the partitions written since the last
//! status report (the control plane reports them).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use tokio::sync::{Notify, watch};

/// The log end of every partition someone streams from, so streams wake
/// when produce appends.
#[derive(Debug, Default)]
pub struct Offsets {
    ends: RwLock<HashMap<String, HashMap<u32, watch::Sender<i64>>>>,
}

impl Offsets {
    /// Watches a partition's log end, starting from `current`.
    pub fn subscribe(&self, topic: &str, partition: u32, current: i64) -> watch::Receiver<i64> {
        let mut ends = self.ends.write().unwrap_or_else(|p| p.into_inner());
        let partitions = ends.entry(topic.to_string()).or_default();
        let sender = partitions
            .entry(partition)
            .or_insert_with(|| watch::channel(current).0);
        sender.send_if_modified(|end| {
            let newer = current > *end;
            *end = (*end).max(current);
            newer
        });
        sender.subscribe()
    }

    /// Announces a partition's new log end (after an append).
    pub fn publish(&self, topic: &str, partition: u32, end: i64) {
        let ends = self.ends.read().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = ends.get(topic).and_then(|p| p.get(&partition)) {
            sender.send_if_modified(|current| {
                let newer = end > *current;
                *current = (*current).max(end);
                newer
            });
        }
    }

    /// Forgets a removed partition: its streams see their sender go.
    pub fn forget(&self, topic: &str, partition: u32) {
        let mut ends = self.ends.write().unwrap_or_else(|p| p.into_inner());
        if let Some(partitions) = ends.get_mut(topic) {
            partitions.remove(&partition);
            if partitions.is_empty() {
                ends.remove(topic);
            }
        }
    }
}

/// Partitions whose status the SC has not heard yet: written since the last
/// report, or newly led. Keyed by topic, so that marking looks the topic up
/// by `&str`: no allocation once a topic is present, no scan.
#[derive(Debug, Default)]
pub struct Unreported {
    partitions: Mutex<HashMap<String, HashSet<u32>>>,
    marked: Notify,
}

impl Unreported {
    /// Notes a partition to report.
    pub fn mark(&self, topic: &str, partition: u32) {
        let mut dirty = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        match dirty.get_mut(topic) {
            Some(partitions) => {
                partitions.insert(partition);
            }
            None => {
                dirty.insert(topic.to_string(), HashSet::from([partition]));
            }
        }
        drop(dirty);
        self.marked.notify_one();
    }

    /// Resolves once something was marked since the last [`take`](Self::take).
    pub async fn marked(&self) {
        self.marked.notified().await;
    }

    /// Everything marked so far; the set starts empty again.
    pub fn take(&self) -> HashSet<(String, u32)> {
        let dirty = std::mem::take(&mut *self.partitions.lock().unwrap_or_else(|p| p.into_inner()));
        dirty
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .collect()
    }
}
