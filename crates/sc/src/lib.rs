//! # mg-sc: the SC
//!
//! Owns the metadata that says which partition plays which mirror role,
//! keeps it on disk, and pushes it to the SPUs.
//!
//! Map:
//! - [`store`]: one file per object, written atomically, schema-versioned.
//! - [`etcd`]: the same objects as keys on etcd v3, one transaction a change.
//! - [`persist`]: which of the two a cluster runs on, and a change's writes
//!   ([`persist::Changeset`]), committed together.
//! - [`model`]: the objects (SPUs, topics, partitions, mirrors) and their
//!   control-plane forms.
//! - [`catalog`]: the objects in memory and the rules a change must pass.
//! - [`distribution`]: epochs and the replica change log SPUs catch up from.
//! - [`liveness`]: SPU sessions and the offsets their leaders report.
//! - [`cluster`]: [`Cluster`], tying them together: a change is planned on
//!   the catalog, persisted (no in-memory lock held), then applied and
//!   logged with a new epoch for the SPUs.
//! - [`error`]: [`ApiError`] and [`ObjectKind`], mapped to Fluvio's error
//!   codes in one place.
//! - [`private`]: the control-plane server SPUs register with; it pushes a
//!   full sync, then the changes, and takes the SPUs' status reports.
//! - [`metrics`]: the SC's counters on `/metrics`.
//! - [`mirroring`]: the SC-to-SC `MirrorConnect` stream: served to remotes
//!   on the public port (home side), dialed to the home (remote side),
//!   which keeps the local copies of the home's topics.
//! - [`secrets`]: a remote's TLS material for its home, in files of mode
//!   0600, out of the metadata.
//! - [`versions`]: what the public port advertises (ApiVersions).
//! - [`upgrade`]: check, migrate into a new generation, finalize, roll
//!   back, and the checks that gate a resume, on files or etcd
//!   ([`upgrade::Generations`]).
//! - [`migrate`]: move a cluster's metadata from its files to etcd.
//! - [`public`]: the Fluvio SC public API the official client uses
//!   (ApiVersions, Create, Delete, List, Watch), on fluvio-sc-schema's
//!   types: listener, dispatch, projection, watches.
//!
//! Persistence is [`persist`] over [`store`] or [`etcd`]; both servers listen through `mg-transport`.

pub mod catalog;
pub mod cluster;
pub mod distribution;
pub mod error;
pub mod etcd;
pub mod liveness;
pub mod metrics;
pub mod migrate;
pub mod mirroring;
pub mod model;
pub mod persist;
pub mod private;
pub mod public;
pub mod secrets;
pub mod store;
pub mod upgrade;
pub mod versions;

pub use cluster::Cluster;
pub use error::{AdminError, ApiError, ObjectKind};
pub use private::{RunningPrivate, serve_private};
pub use public::{RunningPublic, serve_public};
