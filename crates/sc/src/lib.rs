//! # mg-sc: the SC
//!
//! Owns the metadata that says which partition plays which mirror role,
//! keeps it on disk, and pushes it to the SPUs.
//!
//! Map:
//! - [`store`]: one file per object, written atomically, schema-versioned.
//! - [`model`]: the objects (SPUs, topics, partitions, mirrors) and their
//!   control-plane forms.
//! - [`cluster`]: [`Cluster`], the state in memory and its operations; every
//!   change is persisted first, then logged with a new epoch for the SPUs.
//! - [`private`]: the control-plane server SPUs register with; it pushes a
//!   full sync, then the changes, and takes the SPUs' status reports.
//! - [`upgrade`]: check, migrate into a new generation, finalize, roll
//!   back, and the checks that gate a resume.
//! - [`public`]: the Fluvio SC public API the official client uses
//!   (ApiVersions, Create, Delete, List, Watch), on fluvio-sc-schema's types.

pub mod cluster;
pub mod model;
pub mod private;
pub mod public;
pub mod store;
pub mod upgrade;

pub use cluster::{AdminError, Cluster};
pub use private::{RunningPrivate, serve_private};
pub use public::{RunningPublic, serve_public};
