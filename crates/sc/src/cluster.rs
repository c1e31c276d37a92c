//! The SC's state and the operations that change it.
//!
//! Every operation persists its objects first and only then changes the
//! state in memory, so what SPUs are told is always on disk. Replica changes
//! are logged with increasing epochs, and control-plane sessions catch up
//! from the log; one that has fallen behind the log gets a full sync.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::Mutex;

use mg_controlplane::{Message, MsgType, Replica, UpdateReplicaRequest};
use tokio::sync::watch;
use tracing::info;

use crate::model::{
    HomeSpu, MirrorKind, MirrorObject, PartitionMirror, PartitionObject, SpuObject, TopicObject,
    TopicReplicas,
};
use crate::store::{LoadError, MetadataStore, remove_stale_temps};

/// Replica changes kept for sessions to catch up from.
const LOG_LIMIT: usize = 10_000;

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An object of that name exists already.
    #[error("{kind} {name:?} already exists")]
    Exists {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// No object of that name.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The request makes no sense.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Writing the metadata failed; nothing changed.
    #[error("storing metadata: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone, Debug)]
enum ReplicaChange {
    Upsert(PartitionObject),
    Delete(String, u32),
}

#[derive(Debug, Default)]
struct State {
    spus: BTreeMap<i32, SpuObject>,
    topics: BTreeMap<String, TopicObject>,
    partitions: BTreeMap<(String, u32), PartitionObject>,
    mirrors: BTreeMap<String, MirrorObject>,
    /// Offsets the leaders last reported: (hw, leo, size).
    offsets: BTreeMap<(String, u32), (i64, i64, i64)>,
    /// SPUs with a control-plane session now.
    /// Open control-plane sessions per SPU.
    online: std::collections::BTreeMap<i32, usize>,
    replica_epoch: i64,
    spu_epoch: i64,
    mirror_epoch: i64,
    log: VecDeque<(i64, ReplicaChange)>,
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

/// The SC's metadata, shared by its servers.
#[derive(Debug)]
pub struct Cluster {
    store: MetadataStore,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Bumped when an SPU reports offsets (kept apart: it pushes nothing).
    status: watch::Sender<u64>,
}

impl Cluster {
    /// Loads every object under `data_dir`. One unreadable object fails the
    /// whole load, naming its file: the SC never starts on a partial view.
    /// Refuses, too, metadata that needs migrating, metadata from a newer
    /// schema, and an interrupted upgrade.
    pub fn open(data_dir: &Path) -> Result<Self, LoadError> {
        let list_error = |source| LoadError::List {
            path: data_dir.to_path_buf(),
            source,
        };
        if let Some(interrupted) = crate::upgrade::interrupted(data_dir).map_err(list_error)? {
            return Err(LoadError::IncompleteUpgrade(interrupted));
        }
        let store = MetadataStore::open(data_dir).map_err(list_error)?;
        let mut state = State::default();
        for spu in store.load_all::<SpuObject>()? {
            state.spus.insert(spu.id, spu);
        }
        for topic in store.load_all::<TopicObject>()? {
            state.topics.insert(topic.name.clone(), topic);
        }
        for partition in store.load_all::<PartitionObject>()? {
            state
                .partitions
                .insert((partition.topic.clone(), partition.partition), partition);
        }
        for mirror in store.load_all::<MirrorObject>()? {
            state.mirrors.insert(mirror.name.clone(), mirror);
        }
        // Everything loaded: what crashed writes left behind can go (the
        // objects they were replacing are whole, and were just read).
        let stale = remove_stale_temps(data_dir)
            .and_then(|top| Ok(top + store.remove_stale_temps()?))
            .map_err(list_error)?;
        if stale > 0 {
            info!(
                files = stale,
                "removed temporary files of interrupted writes"
            );
        }
        // Epochs restart with the process; SPUs resync on every new session.
        state.replica_epoch = 1;
        state.spu_epoch = 1;
        state.mirror_epoch = 1;
        info!(
            spus = state.spus.len(),
            topics = state.topics.len(),
            partitions = state.partitions.len(),
            mirrors = state.mirrors.len(),
            "loaded metadata"
        );
        Ok(Self {
            store,
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            status: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Wakes whenever anything changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes whenever an SPU reports offsets.
    pub fn subscribe_status(&self) -> watch::Receiver<u64> {
        self.status.subscribe()
    }

    /// Counts a control-plane session of an SPU as up (`true`) or down. An
    /// SPU is online while it has at least one: a reconnecting SPU's new
    /// session may start before the SC notices that the old one ended.
    pub fn set_online(&self, id: i32, online: bool) {
        let mut state = self.lock();
        let sessions = state.online.entry(id).or_insert(0);
        let before = *sessions;
        *sessions = if online {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let changed = (before == 0) != (*sessions == 0);
        if *sessions == 0 {
            state.online.remove(&id);
        }
        drop(state);
        if changed {
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// Whether an SPU has a control-plane session now.
    pub fn is_online(&self, id: i32) -> bool {
        self.lock().online.contains_key(&id)
    }

    /// Forgets a registered remote; refused while a mirror topic uses it.
    pub fn unregister_remote(&self, id: &str) -> Result<(), AdminError> {
        let mut state = self.lock();
        if !matches!(
            state.mirrors.get(id).map(|m| &m.kind),
            Some(MirrorKind::Remote { .. })
        ) {
            return Err(AdminError::NotFound {
                kind: "remote",
                name: id.to_string(),
            });
        }
        let used = state.topics.values().any(|t| {
            matches!(&t.replicas, TopicReplicas::MirrorHome { remotes, .. } if remotes.iter().any(|r| r == id))
        });
        if used {
            return Err(AdminError::Invalid(format!(
                "remote {id:?} is used by a mirror topic"
            )));
        }
        self.store.delete::<MirrorObject>(id)?;
        state.mirrors.remove(id);
        state.mirror_epoch += 1;
        drop(state);
        self.notify();
        Ok(())
    }

    /// Whether `id` is a known SPU.
    pub fn has_spu(&self, id: i32) -> bool {
        self.lock().spus.contains_key(&id)
    }

    /// Every SPU, and the SPU epoch.
    pub fn spus(&self) -> (i64, Vec<SpuObject>) {
        let state = self.lock();
        (state.spu_epoch, state.spus.values().cloned().collect())
    }

    /// Every mirror object, and the mirror epoch.
    pub fn mirrors(&self) -> (i64, Vec<MirrorObject>) {
        let state = self.lock();
        (
            state.mirror_epoch,
            state.mirrors.values().cloned().collect(),
        )
    }

    /// Every topic.
    pub fn topics(&self) -> Vec<TopicObject> {
        self.lock().topics.values().cloned().collect()
    }

    /// Every partition.
    pub fn partitions(&self) -> Vec<PartitionObject> {
        self.lock().partitions.values().cloned().collect()
    }

    /// The offsets a leader last reported: (hw, leo, size).
    pub fn offsets(&self, topic: &str, partition: u32) -> Option<(i64, i64, i64)> {
        self.lock()
            .offsets
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// Adds an SPU (it may then register) or updates its endpoints.
    pub fn register_spu(
        &self,
        id: i32,
        public_endpoint: &str,
        private_endpoint: &str,
    ) -> Result<(), AdminError> {
        let spu = SpuObject {
            id,
            public_endpoint: public_endpoint.to_string(),
            private_endpoint: private_endpoint.to_string(),
            rack: None,
            extra: Default::default(),
        };
        self.store.put(&spu)?;
        let mut state = self.lock();
        state.spus.insert(id, spu);
        state.spu_epoch += 1;
        drop(state);
        self.notify();
        Ok(())
    }

    /// Creates a plain topic, its partitions' leaders spread over the SPUs.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), AdminError> {
        if partitions == 0 {
            return Err(AdminError::Invalid(
                "a topic needs at least one partition".into(),
            ));
        }
        self.create(name, TopicReplicas::Computed { partitions }, |_| None)
    }

    /// Registers a remote cluster (on the home).
    pub fn register_remote(&self, id: &str) -> Result<(), AdminError> {
        self.add_mirror("remote", id, MirrorKind::Remote { id: id.to_string() })
    }

    /// Adds a mirror object named `name`, refusing a duplicate.
    fn add_mirror(
        &self,
        kind: &'static str,
        name: &str,
        mirror: MirrorKind,
    ) -> Result<(), AdminError> {
        let mut state = self.lock();
        if state.mirrors.contains_key(name) {
            return Err(AdminError::Exists {
                kind,
                name: name.to_string(),
            });
        }
        let mirror = MirrorObject {
            name: name.to_string(),
            kind: mirror,
            extra: Default::default(),
        };
        self.store.put(&mirror)?;
        state.mirrors.insert(name.to_string(), mirror);
        state.mirror_epoch += 1;
        drop(state);
        self.notify();
        Ok(())
    }

    /// Creates the home side of a mirror topic: partition i mirrors remote i.
    pub fn create_mirror_topic(
        &self,
        name: &str,
        remotes: &[String],
        home_to_remote: bool,
    ) -> Result<(), AdminError> {
        if remotes.is_empty() {
            return Err(AdminError::Invalid(
                "a mirror topic needs at least one remote".into(),
            ));
        }
        {
            let state = self.lock();
            let missing: Vec<&String> = remotes
                .iter()
                .filter(|r| {
                    !matches!(
                        state.mirrors.get(*r).map(|m| &m.kind),
                        Some(MirrorKind::Remote { .. })
                    )
                })
                .collect();
            if !missing.is_empty() {
                return Err(AdminError::NotFound {
                    kind: "remote",
                    name: format!("{missing:?}"),
                });
            }
        }
        let replicas = TopicReplicas::MirrorHome {
            remotes: remotes.to_vec(),
            home_to_remote,
        };
        self.create(name, replicas, |partition| {
            Some(PartitionMirror::Home {
                remote_cluster: remotes[partition as usize].clone(),
                remote_replica: format!("{name}-0"),
                source: home_to_remote,
            })
        })
    }

    /// Creates the remote side of a mirror topic: one partition, mirrored
    /// with `home_spu`; with `target`, the home-to-remote target, which
    /// refuses local produce.
    pub fn create_remote_mirror_topic(
        &self,
        name: &str,
        home_cluster: &str,
        home_spu: HomeSpu,
        target: bool,
    ) -> Result<(), AdminError> {
        let role = PartitionMirror::Remote {
            home_cluster: home_cluster.to_string(),
            home_spu_key: home_spu.key.clone(),
            home_spu_id: home_spu.id,
            home_spu_endpoint: home_spu.endpoint.clone(),
            target,
        };
        let replicas = TopicReplicas::MirrorRemote {
            home_cluster: home_cluster.to_string(),
            home_spu,
            target,
        };
        self.create(name, replicas, |_| Some(role.clone()))
    }

    /// Records the home this (remote) cluster mirrors with.
    pub fn connect_home(
        &self,
        id: &str,
        remote_id: &str,
        public_endpoint: &str,
    ) -> Result<(), AdminError> {
        let home = MirrorKind::Home {
            id: id.to_string(),
            remote_id: remote_id.to_string(),
            public_endpoint: public_endpoint.to_string(),
        };
        self.add_mirror("home", id, home)
    }

    fn create(
        &self,
        name: &str,
        replicas: TopicReplicas,
        mirror: impl Fn(u32) -> Option<PartitionMirror>,
    ) -> Result<(), AdminError> {
        let count = match &replicas {
            TopicReplicas::Computed { partitions } => *partitions,
            TopicReplicas::MirrorHome { remotes, .. } => remotes.len() as u32,
            TopicReplicas::MirrorRemote { .. } => 1,
        };
        let mut state = self.lock();
        if state.topics.contains_key(name) {
            return Err(AdminError::Exists {
                kind: "topic",
                name: name.to_string(),
            });
        }
        let spus: Vec<i32> = state.spus.keys().copied().collect();
        if spus.is_empty() {
            return Err(AdminError::Invalid("no SPU to place partitions on".into()));
        }
        // Round-robin, continuing where the previous topic stopped, so
        // single-partition topics spread over the SPUs too.
        let start = state.partitions.len();
        let partitions: Vec<PartitionObject> = (0..count)
            .map(|p| PartitionObject {
                topic: name.to_string(),
                partition: p,
                leader: spus[(start + p as usize) % spus.len()],
                mirror: mirror(p),
                extra: Default::default(),
            })
            .collect();
        // Partitions first: a crash before the topic file leaves partitions
        // that the next start reports, never a topic without its partitions.
        for partition in &partitions {
            self.store.put(partition)?;
        }
        let topic = TopicObject {
            name: name.to_string(),
            replicas,
            extra: Default::default(),
        };
        self.store.put(&topic)?;
        state.topics.insert(name.to_string(), topic);
        for partition in partitions {
            state.log_change(ReplicaChange::Upsert(partition.clone()));
            state
                .partitions
                .insert((partition.topic.clone(), partition.partition), partition);
        }
        drop(state);
        self.notify();
        Ok(())
    }

    /// Changes one partition's mirror role (e.g. flips `source`).
    pub fn set_partition_mirror(
        &self,
        topic: &str,
        partition: u32,
        mirror: Option<PartitionMirror>,
    ) -> Result<(), AdminError> {
        let mut state = self.lock();
        let key = (topic.to_string(), partition);
        let Some(current) = state.partitions.get(&key) else {
            return Err(AdminError::NotFound {
                kind: "partition",
                name: format!("{topic}-{partition}"),
            });
        };
        let updated = PartitionObject {
            mirror,
            ..current.clone()
        };
        self.store.put(&updated)?;
        state.log_change(ReplicaChange::Upsert(updated.clone()));
        state.partitions.insert(key, updated);
        drop(state);
        self.notify();
        Ok(())
    }

    /// Deletes a topic and its partitions.
    pub fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let mut state = self.lock();
        if !state.topics.contains_key(name) {
            return Err(AdminError::NotFound {
                kind: "topic",
                name: name.to_string(),
            });
        }
        self.store.delete::<TopicObject>(name)?;
        let keys: Vec<(String, u32)> = state
            .partitions
            .keys()
            .filter(|(t, _)| t == name)
            .cloned()
            .collect();
        for (topic, partition) in keys {
            self.store
                .delete::<PartitionObject>(&format!("{topic}-{partition}"))?;
            state.partitions.remove(&(topic.clone(), partition));
            state.log_change(ReplicaChange::Delete(topic, partition));
        }
        state.topics.remove(name);
        drop(state);
        self.notify();
        Ok(())
    }

    /// Records a leader's offsets from its status report; unknown
    /// partitions are skipped (not the whole report, unlike Fluvio's SC).
    pub fn record_offsets(&self, topic: &str, partition: u32, hw: i64, leo: i64, size: i64) {
        let mut state = self.lock();
        let key = (topic.to_string(), partition);
        if state.partitions.contains_key(&key) {
            state.offsets.insert(key, (hw, leo, size));
            drop(state);
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// What a session at `epoch` (`None`: a new session) must be sent.
    pub fn replicas_since(&self, epoch: Option<i64>) -> ReplicaCatchUp {
        let state = self.lock();
        let current = state.replica_epoch;
        let full = || ReplicaCatchUp::Send {
            request: UpdateReplicaRequest::sync(
                current,
                state
                    .partitions
                    .values()
                    .map(PartitionObject::to_replica)
                    .collect(),
            ),
            epoch: current,
        };
        let Some(epoch) = epoch else { return full() };
        if epoch >= current {
            return ReplicaCatchUp::Nothing;
        }
        let covered = state
            .log
            .front()
            .is_some_and(|(first, _)| *first <= epoch + 1);
        if !covered {
            return full();
        }
        let changes: Vec<Message<Replica>> = state
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

impl State {
    fn log_change(&mut self, change: ReplicaChange) {
        self.replica_epoch += 1;
        self.log.push_back((self.replica_epoch, change));
        while self.log.len() > LOG_LIMIT {
            self.log.pop_front();
        }
    }
}
