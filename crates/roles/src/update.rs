//! The updates the SC sends, in the shape of Fluvio's control plane.
//!
//! Fluvio's `UpdateReplicaRequest` carries an epoch and either `all` (a full
//! sync: the receiver replaces what it has) or `changes` (upserts and
//! deletes). The SPU keeps only the partitions it leads; an upsert that names
//! another leader removes the partition from this SPU's table.

use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;

/// One partition's replica assignment and mirror role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRole {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The SPU that leads the partition.
    pub leader: i32,
    /// The partition's mirror role, if it belongs to a mirror topic.
    pub mirror: Option<PartitionMirrorConfig>,
}

impl ReplicaRole {
    /// The role of `topic`/`partition`, led by `leader`.
    pub fn new(
        topic: impl Into<String>,
        partition: u32,
        leader: i32,
        mirror: Option<PartitionMirrorConfig>,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition,
            leader,
            mirror,
        }
    }
}

/// One incremental change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// Add or replace a partition.
    Upsert(ReplicaRole),
    /// Forget a partition.
    Remove {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
    },
}

/// An update from the SC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleUpdate {
    /// Full sync: afterwards the table holds exactly these partitions
    /// (those led by this SPU).
    Sync {
        /// The SC's epoch for this state.
        epoch: i64,
        /// Every partition of the cluster, or at least every one this SPU leads.
        all: Vec<ReplicaRole>,
    },
    /// Incremental changes, applied in order.
    Changes {
        /// The SC's epoch after these changes.
        epoch: i64,
        /// The changes.
        changes: Vec<RoleChange>,
    },
}

impl RoleUpdate {
    /// The epoch the update brings the table to.
    pub fn epoch(&self) -> i64 {
        match self {
            RoleUpdate::Sync { epoch, .. } | RoleUpdate::Changes { epoch, .. } => *epoch,
        }
    }
}

/// What applying an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The update was applied and published.
    Applied {
        /// The table's epoch now.
        epoch: i64,
        /// Partitions this SPU leads now.
        partitions: usize,
    },
    /// The update's epoch was not newer than the table's; nothing changed.
    Stale {
        /// The table's epoch.
        current: i64,
        /// The update's epoch.
        offered: i64,
    },
}
