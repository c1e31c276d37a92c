//! # mg-roles: the mirror-role table
//!
//! For every partition this SPU leads, the role the SC assigned it: plain,
//! the home side of a mirror, or the remote side. The SC writes the table;
//! the produce hot path reads it on every request.
//!
//! Map of the crate:
//! - [`policy`]: [`ProducePolicy`], what a role lets clients do, derived once
//!   from Fluvio's [`PartitionMirrorConfig`] when a role is stored.
//! - [`update`]: [`RoleUpdate`], the SC's message shape (an epoch plus either a
//!   full sync or incremental changes) and [`ReplicaRole`], one partition's entry.
//! - [`table`]: [`RoleTable`] (the writer side) and [`Snapshot`] (what readers
//!   see); the hot path reads through a per-connection [`RoleReader`] and
//!   looks a topic's entries up with [`PartitionRoles`].
//!
//! Concurrency: readers take an immutable [`Snapshot`] through `arc-swap`
//! (per connection, a [`RoleReader`] caches it: one atomic load per request
//! while nothing changes), so a lookup never takes a lock and never waits
//! for a writer. A writer builds
//! the next snapshot copy-on-write (only the shards and topics it touches are
//! copied) and publishes it with one atomic swap; it never waits for readers.
//! All partitions of one request are judged against the one snapshot loaded
//! for it.

pub mod policy;
pub mod table;
pub mod update;

pub use fluvio_controlplane_metadata::partition::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig,
};
pub use policy::ProducePolicy;
pub use table::{
    PartitionRole, PartitionRoles, RoleReader, RoleTable, Snapshot, SnapshotGuard, TopicRoles,
};
pub use update::{ApplyOutcome, ReplicaRole, RoleChange, RoleUpdate};
