//! The cluster: the SC's metadata and the operations that change it.
//!
//! It ties four parts together, each in a module of its own:
//! - [`Catalog`](crate::catalog::Catalog): the objects in memory and the
//!   rules a change must pass;
//! - persistence ([`MetadataStore`](crate::store::MetadataStore)): one
//!   file per object, written atomically;
//! - [`Distribution`](crate::distribution::Distribution): epochs and the
//!   replica change log the SPUs catch up from;
//! - [`Liveness`](crate::liveness::Liveness): sessions and reported offsets.
//!
//! A change is planned against the catalog, persisted, and only then
//! applied in memory, so what SPUs are told is always on disk. Changes run
//! one at a time (the writer lock), and the in-memory state is locked only
//! to read or to apply, never while a file is written and synced: readers
//! (list, watch, the SPUs' sessions and reports) never wait on the disk.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use tracing::info;

use crate::catalog::{Catalog, Removal, TopicPlan};
pub use crate::distribution::ReplicaCatchUp;
use crate::distribution::{Distribution, ReplicaChange};
use crate::error::{ApiError, ObjectKind};
use crate::liveness::Liveness;
use crate::model::{
    HomeSpu, MirrorKind, MirrorObject, MirrorState, PartitionMirror, PartitionObject, SpuObject,
    TopicObject, TopicReplicas,
};
use crate::persist::{Changeset, Persistence, StoreConfig};
use crate::secrets::Secrets;
use crate::store::{LoadError, remove_stale_temps};
use fluvio_controlplane_metadata::mirror::{ClientTls, MirrorStatus, MirrorType};
use mg_controlplane::operate::{
    MirrorAction, MirrorLinkReport, MirrorPartitionRow, TopicMirrorState,
};

/// The home a remote cluster mirrors with (its Home mirror object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeLink {
    /// The home's id.
    pub id: String,
    /// This cluster's id at the home.
    pub remote_id: String,
    /// The home SC's public endpoint.
    pub public_endpoint: String,
    /// Whether it is dialed over TLS ([`Cluster::home_tls`] has the material).
    pub tls: bool,
}

/// A topic as a home's MirrorConnect stream describes it to a remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCopy {
    /// The topic's name.
    pub name: String,
    /// The home SPU leading this remote's partition.
    pub home_spu: HomeSpu,
    /// Home-to-remote: the copy is the target.
    pub target: bool,
}

/// What the SPUs are told follows what the catalog holds: both change under
/// one lock.
#[derive(Debug, Default)]
struct State {
    catalog: Catalog,
    distribution: Distribution,
}

impl State {
    /// Puts a partition in the catalog, its change logged for the SPUs.
    fn put_partition(&mut self, partition: PartitionObject) {
        self.distribution
            .log_change(ReplicaChange::Upsert(partition.clone()));
        self.catalog
            .partitions
            .insert((partition.topic.clone(), partition.partition), partition);
    }

    /// Puts a topic and its partitions in the catalog.
    fn put_topic(&mut self, plan: TopicPlan) {
        self.catalog
            .topics
            .insert(plan.topic.name.clone(), plan.topic);
        for partition in plan.partitions {
            self.put_partition(partition);
        }
    }
}

/// The SC's metadata, shared by its servers.
#[derive(Debug)]
pub struct Cluster {
    store: Persistence,
    secrets: Secrets,
    /// Held for the whole of a change, persistence included.
    writer: Mutex<()>,
    /// Held only to read or apply.
    state: Mutex<State>,
    liveness: Mutex<Liveness>,
    changed: watch::Sender<u64>,
    /// Bumped when an SPU reports offsets or comes and goes (kept apart: it
    /// pushes nothing).
    status: watch::Sender<u64>,
}

fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Loads every object under `data_dir`. One unreadable object fails the
    /// whole load, naming its file: the SC never starts on a partial view.
    /// Refuses, too, metadata that needs migrating, metadata from a newer
    /// schema, and an interrupted upgrade.
    pub fn open(data_dir: &Path) -> Result<Self, LoadError> {
        Self::open_with(data_dir, &StoreConfig::Files)
    }

    /// [`open`](Self::open), the metadata kept where `config` says; local
    /// state (the secrets) stays under `data_dir`.
    pub fn open_with(data_dir: &Path, config: &StoreConfig) -> Result<Self, LoadError> {
        let list_error = |source| LoadError::List {
            path: data_dir.to_path_buf(),
            source,
        };
        // (On etcd an upgrade records itself and switches generations in one
        // transaction: it is never seen interrupted.)
        if *config == StoreConfig::Files
            && let Some(interrupted) =
                crate::upgrade::interrupted(&crate::upgrade::Generations::files(data_dir))
                    .map_err(list_error)?
        {
            return Err(LoadError::IncompleteUpgrade(interrupted));
        }
        let store = Persistence::open(config, data_dir).map_err(list_error)?;
        Self::open_on(data_dir, store)
    }

    /// [`open_with`](Self::open_with) on a store already open: an etcd
    /// store this SC was elected on, whose commits are then conditioned on
    /// keeping the leadership.
    pub fn open_on(data_dir: &Path, store: Persistence) -> Result<Self, LoadError> {
        let list_error = |source| LoadError::List {
            path: data_dir.to_path_buf(),
            source,
        };
        let mut catalog = Catalog::default();
        for spu in store.load_all::<SpuObject>()? {
            catalog.spus.insert(spu.id, spu);
        }
        for topic in store.load_all::<TopicObject>()? {
            catalog.topics.insert(topic.name.clone(), topic);
        }
        for partition in store.load_all::<PartitionObject>()? {
            catalog
                .partitions
                .insert((partition.topic.clone(), partition.partition), partition);
        }
        for mirror in store.load_all::<MirrorObject>()? {
            catalog.mirrors.insert(mirror.name.clone(), mirror);
        }
        catalog.settle_deletions();
        // Everything loaded: what crashed writes left behind can go (the
        // objects they were replacing are whole, and were just read).
        let stale = match &store {
            Persistence::Files(files) => remove_stale_temps(data_dir)
                .and_then(|top| Ok(top + files.remove_stale_temps()?))
                .map_err(list_error)?,
            Persistence::Etcd(_) => 0,
        };
        if stale > 0 {
            info!(
                files = stale,
                "removed temporary files of interrupted writes"
            );
        }
        info!(
            store = %store.describe(),
            spus = catalog.spus.len(),
            topics = catalog.topics.len(),
            partitions = catalog.partitions.len(),
            mirrors = catalog.mirrors.len(),
            "loaded metadata"
        );
        Ok(Self {
            store,
            secrets: Secrets::new(data_dir),
            writer: Mutex::new(()),
            state: Mutex::new(State {
                distribution: Distribution::new(catalog.partitions.values()),
                catalog,
            }),
            liveness: Mutex::new(Liveness::default()),
            changed: watch::channel(0).0,
            status: watch::channel(0).0,
        })
    }

    /// Gives up the leadership of the metadata, if this SC holds one (on
    /// etcd), so that a standby takes over at once: the last step of a
    /// graceful stop. Blocks on etcd.
    pub fn resign(&self) -> std::io::Result<()> {
        self.store.resign()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        relock(&self.state)
    }

    /// Runs one change: `plan` against the catalog (state locked briefly),
    /// `persist` with no state lock held, `apply` (locked briefly), then
    /// wakes the sessions and watches.
    fn change<T>(
        &self,
        plan: impl FnOnce(&Catalog) -> Result<T, ApiError>,
        persist: impl FnOnce(&mut Changeset, &T) -> std::io::Result<()>,
        apply: impl FnOnce(&mut State, T),
    ) -> Result<(), ApiError> {
        self.change_if(|catalog| plan(catalog).map(Some), persist, apply)
    }

    /// [`change`](Self::change) where the plan may find nothing to do.
    fn change_if<T>(
        &self,
        plan: impl FnOnce(&Catalog) -> Result<Option<T>, ApiError>,
        persist: impl FnOnce(&mut Changeset, &T) -> std::io::Result<()>,
        apply: impl FnOnce(&mut State, T),
    ) -> Result<(), ApiError> {
        let _writer = relock(&self.writer);
        let Some(planned) = plan(&self.lock().catalog)? else {
            return Ok(());
        };
        let mut changes = Changeset::default();
        persist(&mut changes, &planned)?;
        self.store.commit(changes)?;
        apply(&mut self.lock(), planned);
        self.changed.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Wakes whenever anything changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes whenever an SPU reports offsets, or comes or goes.
    pub fn subscribe_status(&self) -> watch::Receiver<u64> {
        self.status.subscribe()
    }

    /// Counts a control-plane session of an SPU as up (`true`) or down. An
    /// SPU is online while it has at least one: a reconnecting SPU's new
    /// session may start before the SC notices that the old one ended.
    pub fn set_online(&self, id: i32, online: bool) {
        let changed = relock(&self.liveness).session(id, online);
        if changed {
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// Whether an SPU has a control-plane session now.
    pub fn is_online(&self, id: i32) -> bool {
        relock(&self.liveness).is_online(id)
    }

    /// Whether `id` is a known SPU.
    pub fn has_spu(&self, id: i32) -> bool {
        self.lock().catalog.spus.contains_key(&id)
    }

    /// Every SPU, and the SPU epoch.
    pub fn spus(&self) -> (i64, Vec<SpuObject>) {
        let state = self.lock();
        (
            state.distribution.spu_epoch,
            state.catalog.spus.values().cloned().collect(),
        )
    }

    /// Every mirror object, and the mirror epoch.
    pub fn mirrors(&self) -> (i64, Vec<MirrorObject>) {
        let state = self.lock();
        (
            state.distribution.mirror_epoch,
            state.catalog.mirrors.values().cloned().collect(),
        )
    }

    /// Every topic, except those being deleted.
    pub fn topics(&self) -> Vec<TopicObject> {
        let state = self.lock();
        let topics = state.catalog.topics.values();
        topics.filter(|t| !t.deleting).cloned().collect()
    }

    /// Every partition, except those being deleted.
    pub fn partitions(&self) -> Vec<PartitionObject> {
        let state = self.lock();
        let partitions = state.catalog.partitions.values();
        partitions.filter(|p| !p.deleting).cloned().collect()
    }

    /// The offsets a leader last reported: (hw, leo, size).
    pub fn offsets(&self, topic: &str, partition: u32) -> Option<(i64, i64, i64)> {
        relock(&self.liveness).offsets(topic, partition)
    }

    /// Records a leader's offsets from its status report; unknown
    /// partitions are skipped (not the whole report, unlike Fluvio's SC).
    pub fn record_offsets(&self, topic: &str, partition: u32, hw: i64, leo: i64, size: i64) {
        let known = self
            .lock()
            .catalog
            .partitions
            .contains_key(&(topic.to_string(), partition));
        if known {
            relock(&self.liveness).report(topic, partition, (hw, leo, size));
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// What the session of SPU `spu` at `epoch` (`None`: a new session)
    /// must be sent: the partitions it leads, or their changes.
    pub fn replicas_since(&self, spu: i32, epoch: Option<i64>) -> ReplicaCatchUp {
        let state = self.lock();
        state
            .distribution
            .replicas_since(spu, epoch, |key| state.catalog.partitions.get(key))
    }

    /// The epochs of the SPU list and of the mirror objects: a session
    /// fetches either only when its epoch moved.
    pub fn push_epochs(&self) -> (i64, i64) {
        let state = self.lock();
        (
            state.distribution.spu_epoch,
            state.distribution.mirror_epoch,
        )
    }

    /// Adds an SPU (it may then register) or updates its endpoints.
    pub fn register_spu(
        &self,
        id: i32,
        public_endpoint: &str,
        private_endpoint: &str,
    ) -> Result<(), ApiError> {
        let spu = SpuObject {
            id,
            public_endpoint: public_endpoint.to_string(),
            private_endpoint: private_endpoint.to_string(),
            rack: None,
            extra: Default::default(),
        };
        self.change(
            |_| Ok(spu),
            |changes, spu| changes.put(spu),
            |state, spu| {
                state.catalog.spus.insert(id, spu);
                state.distribution.spu_epoch += 1;
            },
        )
    }

    /// Creates a plain topic, its partitions' leaders spread over the SPUs.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), ApiError> {
        if partitions == 0 {
            return Err(ApiError::Invalid(
                "a topic needs at least one partition".into(),
            ));
        }
        self.create(name, TopicReplicas::Computed { partitions }, |_| None)
    }

    /// Registers a remote cluster (on the home).
    pub fn register_remote(&self, id: &str) -> Result<(), ApiError> {
        self.add_mirror(
            ObjectKind::Remote,
            id,
            MirrorKind::Remote { id: id.to_string() },
        )
    }

    /// Records the home this (remote) cluster mirrors with; its TLS
    /// material, if any, goes to the secrets (files of mode 0600), never
    /// into the metadata.
    pub fn connect_home(
        &self,
        id: &str,
        remote_id: &str,
        public_endpoint: &str,
        tls: Option<&ClientTls>,
    ) -> Result<(), ApiError> {
        if let Some(tls) = tls {
            self.secrets.put_home(id, tls)?;
        }
        let home = MirrorKind::Home {
            id: id.to_string(),
            remote_id: remote_id.to_string(),
            public_endpoint: public_endpoint.to_string(),
            tls: tls.is_some(),
        };
        self.add_mirror(ObjectKind::Home, id, home)
    }

    /// Every mirror object as the SC pushes it to its own SPUs: the home's
    /// TLS material included (from the secrets), which no list shows.
    pub fn mirror_pushes(&self) -> (i64, Vec<mg_controlplane::Mirror>) {
        let (epoch, mirrors) = self.mirrors();
        let pushes = mirrors
            .iter()
            .map(|mirror| {
                let mut wire = mirror.to_wire();
                if let (MirrorKind::Home { id, tls: true, .. }, MirrorType::Home(home)) =
                    (&mirror.kind, &mut wire.spec.mirror_type)
                {
                    match self.secrets.home(id) {
                        Ok(material) => home.client_tls = material,
                        Err(err) => {
                            tracing::error!(home = %id, %err, "cannot read the home's TLS material")
                        }
                    }
                }
                wire
            })
            .collect();
        (epoch, pushes)
    }

    fn add_mirror(&self, kind: ObjectKind, name: &str, mirror: MirrorKind) -> Result<(), ApiError> {
        self.change(
            |catalog| catalog.plan_mirror(kind, name, mirror),
            |changes, mirror| changes.put(mirror),
            |state, mirror| {
                state.catalog.mirrors.insert(mirror.name.clone(), mirror);
                state.distribution.mirror_epoch += 1;
            },
        )
    }

    /// Forgets a registered remote; refused while a mirror topic uses it.
    pub fn unregister_remote(&self, id: &str) -> Result<(), ApiError> {
        self.change(
            |catalog| catalog.check_unregister(id),
            |changes, ()| changes.delete::<MirrorObject>(id),
            |state, ()| {
                state.catalog.mirrors.remove(id);
                state.distribution.mirror_epoch += 1;
                relock(&self.liveness).forget_mirror(id);
            },
        )
    }

    /// Creates the home side of a mirror topic: partition i mirrors remote i.
    pub fn create_mirror_topic(
        &self,
        name: &str,
        remotes: &[String],
        home_to_remote: bool,
    ) -> Result<(), ApiError> {
        if remotes.is_empty() {
            return Err(ApiError::Invalid(
                "a mirror topic needs at least one remote".into(),
            ));
        }
        self.lock().catalog.check_remotes(remotes)?;
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
    ) -> Result<(), ApiError> {
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

    fn create(
        &self,
        name: &str,
        replicas: TopicReplicas,
        mirror: impl Fn(u32) -> Option<PartitionMirror>,
    ) -> Result<(), ApiError> {
        self.change(
            |catalog| catalog.plan_topic(name, replicas, mirror),
            |changes, new: &TopicPlan| {
                // Partitions first: a crash before the topic file leaves
                // partitions that the next start reports, never a topic
                // without its partitions.
                for partition in &new.partitions {
                    changes.put(partition)?;
                }
                changes.put(&new.topic)
            },
            State::put_topic,
        )
    }

    /// Changes one partition's mirror role (e.g. flips `source`).
    pub fn set_partition_mirror(
        &self,
        topic: &str,
        partition: u32,
        mirror: Option<PartitionMirror>,
    ) -> Result<(), ApiError> {
        self.change(
            |catalog| {
                Ok(PartitionObject {
                    mirror,
                    ..catalog.partition(topic, partition)?.clone()
                })
            },
            |changes, updated| changes.put(updated),
            State::put_partition,
        )
    }

    /// Deletes a topic, in two steps as Fluvio does: the topic and its
    /// partitions are marked as being deleted (hidden from lists, the name
    /// taken) and sent to the SPUs as such; each leader removes the
    /// partition's records and confirms (ReplicaRemoved), and only then is
    /// the partition forgotten ([`replica_removed`](Self::replica_removed)),
    /// the topic with its last one. So a topic created again under the same
    /// name can never meet the old one's records, even on an SPU that was
    /// away when it was deleted.
    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        self.delete(name, false)
    }

    fn delete(&self, name: &str, mirrored: bool) -> Result<(), ApiError> {
        self.change(
            |catalog| catalog.plan_deletion(name, mirrored),
            |changes, deletion: &TopicPlan| {
                // The topic first: a crash after it leaves a topic being
                // deleted, whose partitions the next start marks too.
                changes.put(&deletion.topic)?;
                for partition in &deletion.partitions {
                    changes.put(partition)?;
                }
                Ok(())
            },
            State::put_topic,
        )
    }

    /// An SPU confirmed that a partition it led is gone from its disk: if
    /// the partition was being deleted, it is forgotten now (its topic too,
    /// if it was the last). Anything else is ignored.
    pub fn replica_removed(&self, spu: i32, topic: &str, partition: u32) -> Result<(), ApiError> {
        self.change_if(
            |catalog| Ok(catalog.plan_removal(spu, topic, partition)),
            |changes, removal: &Removal| {
                changes.delete::<PartitionObject>(&format!(
                    "{}-{}",
                    removal.topic, removal.partition
                ))?;
                if removal.last {
                    changes.delete::<TopicObject>(&removal.topic)?;
                }
                Ok(())
            },
            |state, removal| {
                let key = (removal.topic.clone(), removal.partition);
                let leader = state.catalog.partitions.remove(&key).map(|p| p.leader);
                relock(&self.liveness).forget(&removal.topic, removal.partition);
                if removal.last {
                    state.catalog.topics.remove(&removal.topic);
                }
                state.distribution.log_change(ReplicaChange::Delete(
                    removal.topic,
                    removal.partition,
                    leader.unwrap_or(spu),
                ));
            },
        )
    }

    /// Whether `id` is a registered remote (on a home).
    pub fn is_registered_remote(&self, id: &str) -> bool {
        self.lock().catalog.is_remote(id)
    }

    /// The home this (remote) cluster mirrors with, if any: the first Home
    /// object (one home per remote cluster, as in Fluvio).
    pub fn home(&self) -> Option<HomeLink> {
        let state = self.lock();
        state.catalog.mirrors.values().find_map(|m| match &m.kind {
            MirrorKind::Home {
                id,
                remote_id,
                public_endpoint,
                tls,
            } => Some(HomeLink {
                id: id.clone(),
                remote_id: remote_id.clone(),
                public_endpoint: public_endpoint.clone(),
                tls: *tls,
            }),
            MirrorKind::Remote { .. } => None,
        })
    }

    /// What dialing `home` over TLS takes, from the secrets.
    pub fn home_tls(&self, home: &str) -> std::io::Result<Option<ClientTls>> {
        self.secrets.home(home)
    }

    /// The home mirror topics that list `remote`, each with the SPU that
    /// leads that remote's partition: what a remote's MirrorConnect stream
    /// carries. Topics being deleted are left out (the remote deletes its
    /// copy), and so is a partition whose leader is unknown.
    pub fn topics_for_remote(&self, remote: &str) -> Vec<(TopicObject, SpuObject)> {
        let state = self.lock();
        let catalog = &state.catalog;
        catalog
            .topics
            .values()
            .filter(|topic| !topic.deleting)
            .filter_map(|topic| {
                let TopicReplicas::MirrorHome { remotes, .. } = &topic.replicas else {
                    return None;
                };
                let index = remotes.iter().position(|r| r == remote)? as u32;
                let partition = catalog.partitions.get(&(topic.name.clone(), index))?;
                let spu = catalog.spus.get(&partition.leader)?;
                Some((topic.clone(), spu.clone()))
            })
            .collect()
    }

    /// Makes this (remote) cluster's copies of `home`'s topics match what
    /// the home sent: creates the missing, updates the changed, deletes
    /// those the home no longer lists. Only that home's copies are touched;
    /// a local topic of the same name is left alone (and logged).
    pub fn sync_from_home(&self, home: &str, wanted: &[RemoteCopy]) -> Result<(), ApiError> {
        let existing: Vec<TopicObject> = self.lock().catalog.topics.values().cloned().collect();
        for copy in wanted {
            let desired = TopicReplicas::MirrorRemote {
                home_cluster: home.to_string(),
                home_spu: copy.home_spu.clone(),
                target: copy.target,
            };
            match existing.iter().find(|t| t.name == copy.name) {
                None => self.create_remote_mirror_topic(
                    &copy.name,
                    home,
                    copy.home_spu.clone(),
                    copy.target,
                )?,
                Some(topic) if topic.deleting => {}
                Some(topic) if topic.replicas == desired => {}
                Some(topic) if self.detached(&topic.name) => {}
                Some(topic) if matches!(&topic.replicas, TopicReplicas::MirrorRemote { home_cluster, .. } if home_cluster == home) =>
                {
                    self.update_remote_copy(topic, desired)?;
                }
                Some(_) => {
                    tracing::warn!(topic = %copy.name, home, "a local topic has the name of a mirrored one: not touched");
                }
            }
        }
        for topic in existing {
            let ours = matches!(&topic.replicas, TopicReplicas::MirrorRemote { home_cluster, .. } if home_cluster == home);
            let gone = !wanted.iter().any(|c| c.name == topic.name);
            if ours && gone && !topic.deleting && !self.detached(&topic.name) {
                info!(topic = %topic.name, home, "the home no longer mirrors this topic: deleting the copy");
                self.delete(&topic.name, true)?;
            }
        }
        Ok(())
    }

    /// Whether a topic's mirroring ended on every partition (promoted,
    /// failed over, or ended by the receiving side): it is this cluster's
    /// own topic now, which the peer's topic list no longer touches.
    fn detached(&self, topic: &str) -> bool {
        let state = self.lock();
        let mut partitions = state
            .catalog
            .partitions
            .values()
            .filter(|p| p.topic == topic);
        partitions.all(|p| p.mirror_state.has_ended())
    }

    /// Points a remote copy at another home SPU, or flips its direction.
    fn update_remote_copy(
        &self,
        topic: &TopicObject,
        replicas: TopicReplicas,
    ) -> Result<(), ApiError> {
        let TopicReplicas::MirrorRemote {
            home_cluster,
            home_spu,
            target,
        } = &replicas
        else {
            return Err(ApiError::Invalid("not a remote mirror topic".into()));
        };
        let role = PartitionMirror::Remote {
            home_cluster: home_cluster.clone(),
            home_spu_key: home_spu.key.clone(),
            home_spu_id: home_spu.id,
            home_spu_endpoint: home_spu.endpoint.clone(),
            target: *target,
        };
        let name = topic.name.clone();
        self.change(
            |catalog| {
                let partitions = catalog
                    .partitions
                    .values()
                    .filter(|p| p.topic == name)
                    .map(|p| PartitionObject {
                        mirror: Some(role.clone()),
                        ..p.clone()
                    })
                    .collect();
                Ok(TopicPlan {
                    topic: TopicObject {
                        replicas,
                        ..topic.clone()
                    },
                    partitions,
                })
            },
            |changes, plan: &TopicPlan| {
                for partition in &plan.partitions {
                    changes.put(partition)?;
                }
                changes.put(&plan.topic)
            },
            State::put_topic,
        )
    }

    /// Merges the SC's side of a mirror's pairing (its MirrorConnect stream).
    pub fn mirror_status_from_sc(&self, mirror: &str, status: MirrorStatus) {
        if relock(&self.liveness).mirror_from_sc(mirror, status) {
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// Merges an SPU's side of a mirror's pairing (UpdateMirrorStat).
    /// Reports of a mirror object that is gone (unregistered meanwhile) are
    /// dropped, so its status does not outlive it.
    pub fn mirror_status_from_spu(&self, mirror: &str, status: MirrorStatus) {
        if !self.lock().catalog.mirrors.contains_key(mirror) {
            return;
        }
        if relock(&self.liveness).mirror_from_spu(mirror, status) {
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// A mirror object's pairing, as last heard.
    pub fn mirror_status(&self, mirror: &str) -> MirrorStatus {
        relock(&self.liveness).mirror(mirror)
    }

    /// Records a leader's report of a mirror partition's link (UpdateLrs
    /// v2); unknown partitions are skipped.
    pub fn record_link(&self, spu: i32, topic: &str, partition: u32, report: MirrorLinkReport) {
        let known = self
            .lock()
            .catalog
            .partitions
            .contains_key(&(topic.to_string(), partition));
        if known && relock(&self.liveness).link(spu, topic, partition, report) {
            self.status.send_modify(|n| *n += 1);
        }
    }

    /// The partitions an operator's `action` on `topic` is about, checked
    /// as the action itself would be, changing nothing.
    pub fn mirror_targets(
        &self,
        topic: &str,
        remote: Option<&str>,
        action: MirrorAction,
    ) -> Result<Vec<(String, u32)>, ApiError> {
        let plan = self
            .lock()
            .catalog
            .plan_mirror_action(topic, remote, action)?;
        Ok(plan.targets)
    }

    /// Pauses, resumes, promotes or fails over the partitions of `topic`
    /// this cluster receives (only `remote`'s, if given): their new state
    /// and epoch are persisted, then pushed to their leaders, which fence
    /// at the epoch ([`unfenced`](Self::unfenced) says when they have).
    /// Returns the partitions the action is about.
    pub fn act_on_mirror(
        &self,
        topic: &str,
        remote: Option<&str>,
        action: MirrorAction,
    ) -> Result<Vec<(String, u32)>, ApiError> {
        let mut targets = Vec::new();
        self.change_if(
            |catalog| {
                let plan = catalog.plan_mirror_action(topic, remote, action)?;
                targets = plan.targets;
                Ok((!plan.changed.is_empty()).then_some(plan.changed))
            },
            |changes, changed: &Vec<PartitionObject>| {
                changed.iter().try_for_each(|p| changes.put(p))
            },
            |state, changed| changed.into_iter().for_each(|p| state.put_partition(p)),
        )?;
        if !targets.is_empty() {
            info!(
                topic,
                remote,
                action = action.as_str(),
                partitions = targets.len(),
                "mirror action committed"
            );
        }
        Ok(targets)
    }

    /// Why `targets` are not all in sync now (`None`: they are): each
    /// leader must have reported, since `since` and at the partition's
    /// current epoch, a connected link with no lag.
    pub fn out_of_sync(&self, targets: &[(String, u32)], since: Instant) -> Option<String> {
        let reasons: Vec<String> = targets
            .iter()
            .filter_map(|(topic, partition)| {
                let name = format!("{topic}-{partition}");
                let object = self.partition(topic, *partition)?;
                if object.mirror_state.has_ended() {
                    return None; // nothing left to sync
                }
                let leader = object.leader;
                let Some(seen) = relock(&self.liveness).link_of(topic, *partition) else {
                    return Some(format!(
                        "{name}: no report from its leader (SPU {leader}) yet"
                    ));
                };
                let lag = seen.report.lag;
                let current = seen.report.epoch >= object.mirror_epoch;
                if seen.spu != leader || seen.at < since || !current {
                    Some(format!(
                        "{name}: no recent report from its leader (SPU {leader})"
                    ))
                } else if lag < 0 {
                    Some(format!(
                        "{name}: the sender has not said where its log ends yet"
                    ))
                } else if !seen.report.connected {
                    Some(format!(
                        "{name}: the sender is not connected (lag {lag} as last seen)"
                    ))
                } else if lag != 0 {
                    Some(format!("{name}: lag {lag} records"))
                } else {
                    None
                }
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Which of `targets` their leaders have not yet reported fenced at
    /// the partition's epoch (`None`: all have).
    pub fn unfenced(&self, targets: &[(String, u32)]) -> Option<String> {
        let reasons: Vec<String> = targets
            .iter()
            .filter_map(|(topic, partition)| {
                let object = self.partition(topic, *partition)?;
                if object.mirror_epoch == 0 {
                    return None;
                }
                let seen = relock(&self.liveness).link_of(topic, *partition);
                let fenced = seen.as_ref().is_some_and(|seen| {
                    seen.spu == object.leader && seen.report.epoch >= object.mirror_epoch
                });
                let online = if self.is_online(object.leader) {
                    "online"
                } else {
                    "offline"
                };
                (!fenced).then(|| {
                    format!(
                        "{topic}-{partition}: SPU {} ({online}) has not confirmed mirror epoch {}",
                        object.leader, object.mirror_epoch
                    )
                })
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Waits until `check` finds nothing wrong, re-checking on every report
    /// and change; at `deadline`, returns what it last found.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        check: impl Fn(&Cluster) -> Option<String>,
    ) -> Result<(), String> {
        let mut status = self.subscribe_status();
        let mut changes = self.subscribe();
        loop {
            let Some(why) = check(self) else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(why);
            }
            // Reports come every 400 ms; freshness ages without a wake-up.
            let tick = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
            tokio::select! {
                _ = status.changed() => {}
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(tick.min(deadline)) => {}
            }
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Option<PartitionObject> {
        let state = self.lock();
        state
            .catalog
            .partitions
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every mirror partition, as an operator sees it: state, epoch, and
    /// its leader's last report of the link. An active partition whose
    /// link is down shows as `disconnected`.
    pub fn mirror_rows(&self) -> Vec<MirrorPartitionRow> {
        let partitions: Vec<PartitionObject> = self
            .partitions()
            .into_iter()
            .filter(|p| p.mirror.is_some())
            .collect();
        let liveness = relock(&self.liveness);
        partitions
            .into_iter()
            .map(|p| {
                let link = liveness
                    .link_of(&p.topic, p.partition)
                    .filter(|seen| seen.spu == p.leader)
                    .map(|seen| seen.report);
                let down = !link.as_ref().is_some_and(|l| l.connected);
                let state = match p.mirror_state {
                    MirrorState::Active if down => "disconnected",
                    other => other.as_str(),
                };
                MirrorPartitionRow {
                    peer: p.peer().unwrap_or_default().to_string(),
                    direction: if p.receives() { "receives" } else { "sends" }.into(),
                    state: state.into(),
                    epoch: p.mirror_epoch,
                    leader: p.leader,
                    link,
                    topic: p.topic,
                    partition: p.partition,
                }
            })
            .collect()
    }

    /// The state of every partition here that receives from `peer`: what
    /// this side's MirrorStates frames tell it.
    pub fn receiving_states(&self, peer: &str) -> Vec<TopicMirrorState> {
        let state = self.lock();
        state
            .catalog
            .partitions
            .values()
            .filter(|p| !p.deleting && p.receives() && p.peer() == Some(peer))
            .map(|p| TopicMirrorState {
                topic: p.topic.clone(),
                state: p.mirror_state.as_str().into(),
                epoch: p.mirror_epoch,
            })
            .collect()
    }

    /// Makes the partitions here that send to `peer` follow the states its
    /// receiving partitions are in (see [`Catalog::plan_peer_state`]).
    /// States this binary does not know are skipped.
    pub fn follow_peer_states(
        &self,
        peer: &str,
        states: &[TopicMirrorState],
    ) -> Result<(), ApiError> {
        self.change_if(
            |catalog| {
                let changed: Vec<PartitionObject> = states
                    .iter()
                    .filter_map(|s| Some((s.topic.as_str(), MirrorState::parse(&s.state)?)))
                    .flat_map(|(topic, state)| catalog.plan_peer_state(peer, topic, state))
                    .collect();
                Ok((!changed.is_empty()).then_some(changed))
            },
            |changes, changed: &Vec<PartitionObject>| changed.iter().try_for_each(|p| changes.put(p)),
            |state, changed| {
                for p in changed {
                    info!(topic = %p.topic, partition = p.partition, peer, state = p.mirror_state.as_str(), "following the receiving side");
                    state.put_partition(p);
                }
            },
        )
    }

    /// Whether a topic of that name exists, being deleted or not.
    pub fn has_topic(&self, name: &str) -> bool {
        self.lock().catalog.has_topic(name)
    }
}
