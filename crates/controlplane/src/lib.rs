//! # mg-controlplane: the SC <-> SPU control plane, on the wire
//!
//! Fluvio's SPU keeps one TCP connection to the SC's private port. It
//! registers, and from then on both sides only send requests; nobody answers.
//! The crate Fluvio keeps these types in is not published, so they are
//! declared here with Fluvio's own derive rules and metadata types, which
//! makes their bytes Fluvio's bytes (checked in `tests/bytes.rs`).
//!
//! Map:
//! - [`keys`]: the api keys each side sends, and their default versions.
//! - [`messages`]: the request bodies: registration, the SC's pushes
//!   ([`UpdateReplicaRequest`] and friends, each a [`ControlPlaneRequest`]: an
//!   epoch plus either `all` or `changes`), the SPU's status reports.
//!
//! - [`operate`]: mirror-guard's own extension for operating mirrors
//!   (epochs and pause to SPUs, link reports back, the operator's and the
//!   SC-to-SC requests), behind versions and keys Fluvio never uses.
//!
//! Frames are `mg-transport`'s envelope, as on every other port; requests on
//! this connection carry [`keys::CORRELATION_ID`], as Fluvio's do.
//!
//! Versions matter: `UpdateReplicaRequest` carries the mirror direction flags
//! (`source`, `target`) only at version 18 and later. Below that they decode
//! as `false`, which turns a home-to-remote target into a writable partition.

pub mod keys;
pub mod messages;
pub mod operate;

pub use keys::{ScKey, SpuKey};
pub use messages::*;
