//! The catalog: the SC's objects in memory, and the rules a change must
//! pass. Nothing here does I/O: the cluster plans a change against the
//! catalog, persists it, then applies it here.

use std::collections::BTreeMap;

use mg_controlplane::operate::MirrorAction;

use crate::error::{ApiError, ObjectKind};
use crate::model::{
    MirrorKind, MirrorObject, MirrorState, PartitionMirror, PartitionObject, SpuObject,
    TopicObject, TopicReplicas,
};

/// Every object the SC keeps, by key.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// SPUs by id.
    pub spus: BTreeMap<i32, SpuObject>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicObject>,
    /// Partitions by (topic, index).
    pub partitions: BTreeMap<(String, u32), PartitionObject>,
    /// Mirror objects (remotes on a home, the home on a remote) by name.
    pub mirrors: BTreeMap<String, MirrorObject>,
}

/// A topic and its partitions as a change will write them (created, or
/// marked as being deleted).
#[derive(Debug)]
pub struct TopicPlan {
    /// The topic.
    pub topic: TopicObject,
    /// Its partitions.
    pub partitions: Vec<PartitionObject>,
}

impl Catalog {
    /// Whether `id` is a registered remote.
    pub fn is_remote(&self, id: &str) -> bool {
        matches!(
            self.mirrors.get(id).map(|m| &m.kind),
            Some(MirrorKind::Remote { .. })
        )
    }

    /// Plans a topic: refuses a taken name or a cluster with no SPU, and
    /// places partition leaders round-robin, continuing where the previous
    /// topic stopped so that single-partition topics spread too.
    pub fn plan_topic(
        &self,
        name: &str,
        replicas: TopicReplicas,
        mirror: impl Fn(u32) -> Option<PartitionMirror>,
    ) -> Result<TopicPlan, ApiError> {
        let count = match &replicas {
            TopicReplicas::Computed { partitions } => *partitions,
            TopicReplicas::MirrorHome { remotes, .. } => remotes.len() as u32,
            TopicReplicas::MirrorRemote { .. } => 1,
        };
        match self.topics.get(name) {
            Some(topic) if topic.deleting => {
                return Err(ApiError::BeingDeleted(name.to_string()));
            }
            Some(_) => {
                return Err(ApiError::Exists {
                    kind: ObjectKind::Topic,
                    name: name.to_string(),
                });
            }
            None => {}
        }
        let spus: Vec<i32> = self.spus.keys().copied().collect();
        if spus.is_empty() {
            return Err(ApiError::Invalid("no SPU to place partitions on".into()));
        }
        let start = self.partitions.len();
        let partitions = (0..count)
            .map(|p| PartitionObject {
                topic: name.to_string(),
                partition: p,
                leader: spus[(start + p as usize) % spus.len()],
                mirror: mirror(p),
                mirror_state: Default::default(),
                mirror_epoch: 0,
                deleting: false,
                extra: Default::default(),
            })
            .collect();
        Ok(TopicPlan {
            topic: TopicObject {
                name: name.to_string(),
                replicas,
                deleting: false,
                extra: Default::default(),
            },
            partitions,
        })
    }

    /// Refuses remotes that are not registered.
    pub fn check_remotes(&self, remotes: &[String]) -> Result<(), ApiError> {
        let missing: Vec<String> = remotes
            .iter()
            .filter(|r| !self.is_remote(r))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::UnknownRemotes(missing))
        }
    }

    /// Plans a mirror object, refusing a taken name.
    pub fn plan_mirror(
        &self,
        kind: ObjectKind,
        name: &str,
        mirror: MirrorKind,
    ) -> Result<MirrorObject, ApiError> {
        if self.mirrors.contains_key(name) {
            return Err(ApiError::Exists {
                kind,
                name: name.to_string(),
            });
        }
        Ok(MirrorObject {
            name: name.to_string(),
            kind: mirror,
            extra: Default::default(),
        })
    }

    /// Refuses to unregister an unknown remote. One that mirror topics
    /// use may go: its partitions stay, read-only, their records kept, and
    /// nothing can mirror into them until the remote is registered again.
    pub fn check_unregister(&self, id: &str) -> Result<(), ApiError> {
        if !self.is_remote(id) {
            return Err(ApiError::NotFound {
                kind: ObjectKind::Remote,
                name: id.to_string(),
            });
        }
        Ok(())
    }

    /// A partition, or why there is none.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<&PartitionObject, ApiError> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .ok_or_else(|| ApiError::NotFound {
                kind: ObjectKind::Partition,
                name: format!("{topic}-{partition}"),
            })
    }

    /// Plans the deletion of a topic: the topic and its partitions marked
    /// as being deleted. A topic being deleted already plans nothing new.
    /// A topic a remote mirrors from its home is deleted only by the home
    /// (`mirrored`: the deletion comes from the home's mirroring stream):
    /// a client asking the remote is refused.
    pub fn plan_deletion(&self, topic: &str, mirrored: bool) -> Result<TopicPlan, ApiError> {
        let Some(object) = self.topics.get(topic).filter(|t| !t.deleting) else {
            return Err(ApiError::NotFound {
                kind: ObjectKind::Topic,
                name: topic.to_string(),
            });
        };
        // A remote's copy is the home's to delete, unless its mirroring
        // ended (promoted, failed over, or ended by the home): then it is
        // this cluster's own topic.
        let detached = self
            .partitions
            .values()
            .filter(|p| p.topic == topic)
            .all(|p| p.mirror_state.has_ended());
        if !mirrored && !detached && matches!(object.replicas, TopicReplicas::MirrorRemote { .. }) {
            return Err(ApiError::MirrorDeleteFromRemote);
        }
        Ok(TopicPlan {
            topic: TopicObject {
                deleting: true,
                ..object.clone()
            },
            partitions: self
                .partitions
                .values()
                .filter(|p| p.topic == topic)
                .map(|p| PartitionObject {
                    deleting: true,
                    ..p.clone()
                })
                .collect(),
        })
    }

    /// What a leader's confirmation that a partition's records are gone
    /// finishes: the partition, and its topic if it was the last one.
    /// `None` unless `spu` leads that partition and it is being deleted.
    pub fn plan_removal(&self, spu: i32, topic: &str, partition: u32) -> Option<Removal> {
        let object = self.partitions.get(&(topic.to_string(), partition))?;
        if !object.deleting || object.leader != spu {
            return None;
        }
        let last = !self
            .partitions
            .values()
            .any(|p| p.topic == topic && p.partition != partition);
        Some(Removal {
            topic: topic.to_string(),
            partition,
            last,
        })
    }

    /// Whether a topic of that name exists, being deleted or not.
    pub fn has_topic(&self, name: &str) -> bool {
        self.topics.contains_key(name)
    }
}

/// What an operator's mirror action changes.
#[derive(Debug)]
pub struct MirrorPlan {
    /// Every partition the action is about (this side receives them).
    pub targets: Vec<(String, u32)>,
    /// Those it changes, as they will be (state, and a new epoch).
    pub changed: Vec<PartitionObject>,
}

impl Catalog {
    /// Plans `action` on the partitions of `topic` this cluster receives
    /// (only `remote`'s, if given). Doing what is already done changes
    /// nothing; acting on a partition whose mirroring ended is refused.
    pub fn plan_mirror_action(
        &self,
        topic: &str,
        remote: Option<&str>,
        action: MirrorAction,
    ) -> Result<MirrorPlan, ApiError> {
        let Some(object) = self.topics.get(topic).filter(|t| !t.deleting) else {
            return Err(ApiError::NotFound {
                kind: ObjectKind::Topic,
                name: topic.to_string(),
            });
        };
        if matches!(object.replicas, TopicReplicas::Computed { .. }) {
            return Err(ApiError::Invalid(format!(
                "topic {topic:?} is not a mirror topic"
            )));
        }
        let mirrored: Vec<&PartitionObject> = self
            .partitions
            .values()
            .filter(|p| p.topic == topic && p.mirror.is_some())
            .collect();
        let receiving: Vec<&PartitionObject> =
            mirrored.iter().copied().filter(|p| p.receives()).collect();
        if receiving.is_empty() {
            let other = match object.replicas {
                TopicReplicas::MirrorHome { .. } => "each remote",
                _ => "the home",
            };
            return Err(ApiError::Invalid(format!(
                "this cluster sends topic {topic:?}: {} it on the cluster that receives it ({other})",
                action.as_str()
            )));
        }
        let targets: Vec<&PartitionObject> = match remote {
            None => receiving,
            Some(remote) => {
                let of_remote: Vec<&PartitionObject> = receiving
                    .into_iter()
                    .filter(|p| p.peer() == Some(remote))
                    .collect();
                if of_remote.is_empty() {
                    return Err(ApiError::Invalid(format!(
                        "topic {topic:?} has no partition received from {remote:?}"
                    )));
                }
                of_remote
            }
        };
        let mut changed = Vec::new();
        for partition in &targets {
            let name = format!("{}-{}", partition.topic, partition.partition);
            let state = partition.mirror_state;
            let next = match (action, state) {
                (_, MirrorState::Promoted | MirrorState::FailedOver) => {
                    if matches!(action, MirrorAction::Promote | MirrorAction::Failover) {
                        continue; // done already
                    }
                    return Err(ApiError::Invalid(format!(
                        "the mirroring of {name} ended ({}): there is nothing to {}",
                        state.as_str(),
                        action.as_str()
                    )));
                }
                (MirrorAction::Promote, _) => MirrorState::Promoted,
                (MirrorAction::Failover, _) => MirrorState::FailedOver,
                (MirrorAction::Pause, MirrorState::Paused) => continue,
                (MirrorAction::Pause, _) => MirrorState::Paused,
                (MirrorAction::Resume, MirrorState::Active) => continue,
                (MirrorAction::Resume, _) => MirrorState::Active,
            };
            changed.push(PartitionObject {
                mirror_state: next,
                mirror_epoch: partition.mirror_epoch + 1,
                ..(*partition).clone()
            });
        }
        Ok(MirrorPlan {
            targets: targets
                .iter()
                .map(|p| (p.topic.clone(), p.partition))
                .collect(),
            changed,
        })
    }

    /// The partitions here that send `topic` to `peer`, changed to follow
    /// the receiving side's `state`: paused there is `paused-by-peer` here,
    /// promoted or failed over there is `ended` here (for good).
    pub fn plan_peer_state(
        &self,
        peer: &str,
        topic: &str,
        state: MirrorState,
    ) -> Vec<PartitionObject> {
        let next = match state {
            MirrorState::Paused => MirrorState::PausedByPeer,
            MirrorState::Promoted | MirrorState::FailedOver => MirrorState::Ended,
            MirrorState::Active => MirrorState::Active,
            // Sender-side states are never sent: nothing follows them.
            MirrorState::PausedByPeer | MirrorState::Ended => return Vec::new(),
        };
        self.partitions
            .values()
            .filter(|p| p.topic == topic && !p.deleting && p.mirror.is_some())
            .filter(|p| !p.receives() && p.peer() == Some(peer))
            .filter(|p| p.mirror_state != next && p.mirror_state != MirrorState::Ended)
            .map(|p| PartitionObject {
                mirror_state: next,
                mirror_epoch: p.mirror_epoch + 1,
                ..p.clone()
            })
            .collect()
    }
}

/// A partition whose leader confirmed its deletion.
#[derive(Debug)]
pub struct Removal {
    /// Its topic.
    pub topic: String,
    /// Its index.
    pub partition: u32,
    /// Whether it was the topic's last partition (the topic goes too).
    pub last: bool,
}

impl Catalog {
    /// Marks the partitions of topics being deleted as such (after a load:
    /// a crash may have marked the topic and not all its partitions).
    pub fn settle_deletions(&mut self) {
        let deleting: Vec<String> = self
            .topics
            .values()
            .filter(|t| t.deleting)
            .map(|t| t.name.clone())
            .collect();
        for partition in self.partitions.values_mut() {
            if deleting.contains(&partition.topic) {
                partition.deleting = true;
            }
        }
    }
}
