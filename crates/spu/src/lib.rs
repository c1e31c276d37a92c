//! # mg-spu: an SPU that refuses mirror-violating writes before storage
//!
//! A tokio TCP server for Fluvio 0.50 clients on the SPU public API. Every
//! produce frame goes through the guard (`mg-guard`) first; only accepted
//! entries reach the partition logs (`mg-storage`).
//!
//! Map of the crate, following a request:
//! - [`server`]: [`SpuConfig`], [`Spu`] and [`RunningSpu`]: listeners, the
//!   accept loop, shutdown.
//! - [`codec`]: [`FrameCodec`], the i32-size-prefixed frame, with a size limit
//!   checked before any body byte is buffered.
//! - [`connection`]: one task per client; dispatches ApiVersions (18),
//!   Produce (0), Fetch (1) and the stream APIs; closes the connection, with a logged reason,
//!   on anything it cannot decode.
//! - `produce` (private): judge, append the accepted entries, sync for
//!   read-committed, answer every entry in order.
//! - [`fetch`]: reads whole stored batches from an offset.
//! - [`stream`]: what the official consumer uses: FetchOffsets (1002),
//!   StreamFetch (1003), whose responses a task per stream pushes as records
//!   arrive, and UpdateOffsets (1005), the consumer's acknowledgements.
//! - [`storage`]: the [`PartitionStore`] trait the SPU writes through, and the
//!   mapping of storage failures to Fluvio error codes.
//! - [`metrics`] and `http` (private): Prometheus counters on `/metrics`.
//!
//! - [`control`]: the connection to the SC: registration, replica pushes into
//!   the role table, status heartbeats, reconnection with backoff.
//!
//! Roles come from the SC over the control plane (or, standalone, through
//! [`RunningSpu::roles`]); until a partition's role arrives, produce to it is
//! refused as not-leader.

pub mod codec;
pub mod connection;
pub mod control;
pub mod fetch;
mod http;
pub mod metrics;
mod produce;
pub mod server;
pub mod storage;
pub mod stream;

pub use codec::{FrameCodec, FrameError};
pub use connection::{PLATFORM_VERSION, SERVED_VERSIONS};
pub use control::ControlState;
pub use server::{RunningSpu, Spu, SpuConfig};
pub use storage::{PartitionStore, ReadResult};
