//! The catalog: the SC's objects in memory, and the rules a change must
//! pass. Nothing here does I/O: the cluster plans a change against the
//! catalog, persists it, then applies it here.

use std::collections::BTreeMap;

use crate::error::{ApiError, ObjectKind};
use crate::model::{
    MirrorKind, MirrorObject, PartitionMirror, PartitionObject, SpuObject, TopicObject,
    TopicReplicas,
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

/// A topic about to be created: the objects to persist and apply.
#[derive(Debug)]
pub struct NewTopic {
    /// The topic.
    pub topic: TopicObject,
    /// Its partitions, leaders placed.
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
    ) -> Result<NewTopic, ApiError> {
        let count = match &replicas {
            TopicReplicas::Computed { partitions } => *partitions,
            TopicReplicas::MirrorHome { remotes, .. } => remotes.len() as u32,
            TopicReplicas::MirrorRemote { .. } => 1,
        };
        if self.topics.contains_key(name) {
            return Err(ApiError::Exists {
                kind: ObjectKind::Topic,
                name: name.to_string(),
            });
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
                extra: Default::default(),
            })
            .collect();
        Ok(NewTopic {
            topic: TopicObject {
                name: name.to_string(),
                replicas,
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

    /// Refuses to unregister an unknown remote, or one a topic uses.
    pub fn check_unregister(&self, id: &str) -> Result<(), ApiError> {
        if !self.is_remote(id) {
            return Err(ApiError::NotFound {
                kind: ObjectKind::Remote,
                name: id.to_string(),
            });
        }
        let used = self.topics.values().any(|t| {
            matches!(&t.replicas, TopicReplicas::MirrorHome { remotes, .. } if remotes.iter().any(|r| r == id))
        });
        if used {
            return Err(ApiError::RemoteInUse(id.to_string()));
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

    /// The partitions of a topic that exists.
    pub fn partitions_of(&self, topic: &str) -> Result<Vec<(String, u32)>, ApiError> {
        if !self.topics.contains_key(topic) {
            return Err(ApiError::NotFound {
                kind: ObjectKind::Topic,
                name: topic.to_string(),
            });
        }
        Ok(self
            .partitions
            .keys()
            .filter(|(t, _)| t == topic)
            .cloned()
            .collect())
    }
}
