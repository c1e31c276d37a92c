//! Distribution: what the SPUs must be told. Replica changes are logged
//! with increasing epochs; a control-plane session catches up from the
//! log, or gets a full sync when it is new or has fallen behind the log.
//!
//! Each SPU is told only of the partitions it leads: its full sync lists
//! them (from an index by leader, not a walk of every partition), and its
//! catch-up takes only the logged changes of its own partitions, so a
//! change is encoded and sent to the one SPU it concerns, and the others'
//! sessions only move their epoch on. (Partitions have one replica and
//! keep their leader for life; an SPU acts on nothing else. Fluvio's SC
//! sends every replica to every SPU, which each then filters: with 100k
//! partitions, 100k replicas per SPU on every resync.)

use std::collections::{BTreeSet, HashMap, VecDeque};

use mg_controlplane::{Message, MsgType, Replica, UpdateReplicaRequest};

use crate::model::PartitionObject;

/// Replica changes kept for sessions to catch up from.
const LOG_LIMIT: usize = 10_000;

/// One change of a replica.
#[derive(Clone, Debug)]
pub enum ReplicaChange {
    /// Created or changed.
    Upsert(PartitionObject),
    /// Deleted: (topic, partition), and the SPU that led it.
    Delete(String, u32, i32),
}

impl ReplicaChange {
    /// The SPU the change concerns: the partition's leader.
    fn leader(&self) -> i32 {
        match self {
            Self::Upsert(partition) => partition.leader,
            Self::Delete(_, _, leader) => *leader,
        }
    }

    fn key(&self) -> (String, u32) {
        match self {
            Self::Upsert(p) => (p.topic.clone(), p.partition),
            Self::Delete(topic, partition, _) => (topic.clone(), *partition),
        }
    }
}

/// What a session needs to send to catch up on replicas.
#[derive(Debug)]
pub enum ReplicaCatchUp {
    /// Nothing new.
    Nothing,
    /// Nothing for this SPU: only remember `epoch`.
    Skip {
        /// The epoch the session is at now.
        epoch: i64,
    },
    /// Send this (a full sync or changes), then remember `epoch`.
    Send {
        /// The request to push.
        request: UpdateReplicaRequest,
        /// The epoch it brings the session to.
        epoch: i64,
    },
}

/// Epochs of what is pushed, the replica change log, and which SPU leads
/// which partitions.
#[derive(Debug)]
pub struct Distribution {
    /// Epoch of the last replica change.
    pub replica_epoch: i64,
    /// Epoch of the SPU list.
    pub spu_epoch: i64,
    /// Epoch of the mirror objects.
    pub mirror_epoch: i64,
    log: VecDeque<(i64, ReplicaChange)>,
    /// The partitions each SPU leads.
    led: HashMap<i32, BTreeSet<(String, u32)>>,
}

impl Default for Distribution {
    /// Epochs restart with the process; SPUs resync on every new session.
    fn default() -> Self {
        Self {
            replica_epoch: 1,
            spu_epoch: 1,
            mirror_epoch: 1,
            log: VecDeque::new(),
            led: HashMap::new(),
        }
    }
}

impl Distribution {
    /// Distribution of the partitions there are at start.
    pub fn new<'a>(partitions: impl Iterator<Item = &'a PartitionObject>) -> Self {
        let mut distribution = Self::default();
        for partition in partitions {
            distribution.lead(
                partition.leader,
                (partition.topic.clone(), partition.partition),
            );
        }
        distribution
    }

    fn lead(&mut self, leader: i32, key: (String, u32)) {
        self.led.entry(leader).or_default().insert(key);
    }

    /// Logs a replica change under the next epoch.
    pub fn log_change(&mut self, change: ReplicaChange) {
        let (leader, key) = (change.leader(), change.key());
        match &change {
            ReplicaChange::Upsert(_) => self.lead(leader, key),
            ReplicaChange::Delete(..) => {
                if let Some(led) = self.led.get_mut(&leader) {
                    led.remove(&key);
                }
            }
        }
        self.replica_epoch += 1;
        self.log.push_back((self.replica_epoch, change));
        while self.log.len() > LOG_LIMIT {
            self.log.pop_front();
        }
    }

    /// What the session of SPU `spu` at `epoch` (`None`: a new session)
    /// must be sent; `lookup` finds a partition by its key.
    pub fn replicas_since<'a>(
        &self,
        spu: i32,
        epoch: Option<i64>,
        lookup: impl Fn(&(String, u32)) -> Option<&'a PartitionObject>,
    ) -> ReplicaCatchUp {
        let current = self.replica_epoch;
        let covered = epoch.is_some_and(|epoch| {
            epoch >= current
                || self
                    .log
                    .front()
                    .is_some_and(|(first, _)| *first <= epoch + 1)
        });
        let Some(epoch) = epoch.filter(|_| covered) else {
            let led = self.led.get(&spu);
            return ReplicaCatchUp::Send {
                request: UpdateReplicaRequest::sync(
                    current,
                    led.into_iter()
                        .flatten()
                        .filter_map(&lookup)
                        .map(PartitionObject::to_replica)
                        .collect(),
                ),
                epoch: current,
            };
        };
        if epoch >= current {
            return ReplicaCatchUp::Nothing;
        }
        // The log is in epoch order: only its tail is newer.
        let newer = self.log.iter().rev().take_while(|(e, _)| *e > epoch);
        let mut changes: Vec<Message<Replica>> = newer
            .filter(|(_, change)| change.leader() == spu)
            .map(|(_, change)| match change {
                ReplicaChange::Upsert(p) => Message {
                    header: MsgType::UPDATE,
                    content: p.to_replica(),
                },
                ReplicaChange::Delete(topic, partition, _) => Message {
                    header: MsgType::DELETE,
                    content: Replica {
                        id: fluvio_protocol::record::ReplicaKey::new(topic.clone(), *partition),
                        ..Default::default()
                    },
                },
            })
            .collect();
        if changes.is_empty() {
            return ReplicaCatchUp::Skip { epoch: current };
        }
        changes.reverse();
        ReplicaCatchUp::Send {
            request: UpdateReplicaRequest::changes(current, changes),
            epoch: current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, partition: u32, leader: i32) -> PartitionObject {
        PartitionObject {
            topic: topic.into(),
            partition,
            leader,
            mirror: None,
            mirror_state: Default::default(),
            mirror_epoch: 0,
            deleting: false,
            extra: Default::default(),
        }
    }

    fn names(request: &UpdateReplicaRequest) -> (Vec<String>, Vec<String>) {
        let name = |r: &Replica| format!("{}-{}", r.id.topic, r.id.partition);
        (
            request.all.iter().map(name).collect(),
            request.changes.iter().map(|m| name(&m.content)).collect(),
        )
    }

    /// Each SPU hears of its own partitions only, in order; a session whose
    /// SPU has nothing new moves its epoch on without a push.
    #[test]
    fn each_spu_is_told_of_its_own_partitions_only() {
        let initial = [partition("a", 0, 1), partition("a", 1, 2)];
        let mut catalog: std::collections::BTreeMap<(String, u32), PartitionObject> = initial
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.clone()))
            .collect();
        let mut d = Distribution::new(catalog.values());
        let sync = |d: &Distribution, catalog: &std::collections::BTreeMap<_, _>, spu, epoch| {
            d.replicas_since(spu, epoch, |k| catalog.get(k))
        };
        let ReplicaCatchUp::Send { request, epoch } = sync(&d, &catalog, 1, None) else {
            panic!("a new session gets a full sync");
        };
        assert_eq!(names(&request), (vec!["a-0".to_string()], vec![]));
        assert_eq!(epoch, 1);

        for p in [
            partition("b", 0, 2),
            partition("b", 1, 1),
            partition("b", 2, 1),
        ] {
            catalog.insert((p.topic.clone(), p.partition), p.clone());
            d.log_change(ReplicaChange::Upsert(p));
        }
        let ReplicaCatchUp::Send { request, epoch } = sync(&d, &catalog, 1, Some(1)) else {
            panic!("SPU 1 has changes");
        };
        assert_eq!(
            names(&request),
            (vec![], vec!["b-1".to_string(), "b-2".to_string()])
        );
        assert_eq!(epoch, 4);
        assert!(matches!(
            sync(&d, &catalog, 2, Some(2)),
            ReplicaCatchUp::Skip { epoch: 4 }
        ));
        assert!(matches!(
            sync(&d, &catalog, 1, Some(4)),
            ReplicaCatchUp::Nothing
        ));

        catalog.remove(&("b".to_string(), 1));
        d.log_change(ReplicaChange::Delete("b".into(), 1, 1));
        let ReplicaCatchUp::Send { request, .. } = sync(&d, &catalog, 1, Some(4)) else {
            panic!("the delete goes to its leader");
        };
        assert_eq!(request.changes.len(), 1);
        assert_eq!(request.changes[0].header, MsgType::DELETE);
        let ReplicaCatchUp::Send { request, .. } = sync(&d, &catalog, 1, None) else {
            panic!("full sync");
        };
        assert_eq!(
            names(&request).0,
            vec!["a-0".to_string(), "b-2".to_string()],
            "the full sync follows the index"
        );
        let ReplicaCatchUp::Send { request, .. } = sync(&d, &catalog, 3, None) else {
            panic!("full sync");
        };
        assert!(request.all.is_empty(), "an SPU that leads nothing");
    }
}
