//! Distribution: what the SPUs must be told. Replica changes are logged
//! with increasing epochs; a control-plane session catches up from the
//! log, or gets a full sync when it is new or has fallen behind the log.

use std::collections::VecDeque;

use mg_controlplane::{Message, MsgType, Replica, UpdateReplicaRequest};

use crate::model::PartitionObject;

/// Replica changes kept for sessions to catch up from.
const LOG_LIMIT: usize = 10_000;

/// One change of a replica.
#[derive(Clone, Debug)]
pub enum ReplicaChange {
    /// Created or changed.
    Upsert(PartitionObject),
    /// Deleted: (topic, partition).
    Delete(String, u32),
}

/// What a session needs to send to catch up on replicas.
#[derive(Debug)]
pub enum ReplicaCatchUp {
    /// Nothing new.
    Nothing,
    /// Send this (a full sync or changes), then remember `epoch`.
    Send {
        /// The request to push.
        request: UpdateReplicaRequest,
        /// The epoch it brings the session to.
        epoch: i64,
    },
}

/// Epochs of what is pushed, and the replica change log.
#[derive(Debug)]
pub struct Distribution {
    /// Epoch of the last replica change.
    pub replica_epoch: i64,
    /// Epoch of the SPU list.
    pub spu_epoch: i64,
    /// Epoch of the mirror objects.
    pub mirror_epoch: i64,
    log: VecDeque<(i64, ReplicaChange)>,
}

impl Default for Distribution {
    /// Epochs restart with the process; SPUs resync on every new session.
    fn default() -> Self {
        Self {
            replica_epoch: 1,
            spu_epoch: 1,
            mirror_epoch: 1,
            log: VecDeque::new(),
        }
    }
}

impl Distribution {
    /// Logs a replica change under the next epoch.
    pub fn log_change(&mut self, change: ReplicaChange) {
        self.replica_epoch += 1;
        self.log.push_back((self.replica_epoch, change));
        while self.log.len() > LOG_LIMIT {
            self.log.pop_front();
        }
    }

    /// What a session at `epoch` (`None`: a new session) must be sent, given
    /// every partition there is now.
    pub fn replicas_since<'a>(
        &self,
        epoch: Option<i64>,
        partitions: impl Iterator<Item = &'a PartitionObject>,
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
            return ReplicaCatchUp::Send {
                request: UpdateReplicaRequest::sync(
                    current,
                    partitions.map(PartitionObject::to_replica).collect(),
                ),
                epoch: current,
            };
        };
        if epoch >= current {
            return ReplicaCatchUp::Nothing;
        }
        let changes: Vec<Message<Replica>> = self
            .log
            .iter()
            .filter(|(e, _)| *e > epoch)
            .map(|(_, change)| match change {
                ReplicaChange::Upsert(p) => Message {
                    header: MsgType::UPDATE,
                    content: p.to_replica(),
                },
                ReplicaChange::Delete(topic, partition) => Message {
                    header: MsgType::DELETE,
                    content: Replica {
                        id: fluvio_protocol::record::ReplicaKey::new(topic.clone(), *partition),
                        ..Default::default()
                    },
                },
            })
            .collect();
        ReplicaCatchUp::Send {
            request: UpdateReplicaRequest::changes(current, changes),
            epoch: current,
        }
    }
}
