//! # mg-spu: an SPU that refuses mirror-violating writes before storage
//!
//! A tokio TCP server for Fluvio 0.50 clients on the SPU public API. Every
//! produce frame goes through the guard (`mg-guard`) first; only accepted
//! entries reach the partition logs (`mg-storage`), and never on an async
//! worker thread.
//!
//! Map of the crate, following a request:
//! - [`server`]: [`SpuConfig`], [`Spu`] and [`RunningSpu`]: the listeners
//!   (through `mg-transport`'s accept loop), graceful shutdown.
//! - `connection` (private): one task per client: frames in, dispatch by
//!   api key, responses out in order; closes the connection, with a logged
//!   reason, on anything it cannot decode.
//! - [`handlers`]: one module per API: produce, fetch, the consumer's
//!   stream APIs, ApiVersions; each gets only the handles it uses.
//! - `disk` (private): the storage boundary: every disk call runs on a
//!   blocking thread; accepted records travel as slices of the frame.
//! - [`storage`]: the [`PartitionStore`] trait the SPU writes through, and
//!   the mapping of storage failures to Fluvio error codes.
//! - [`changes`]: log ends that wake streams; partitions not yet reported.
//! - [`control`]: the connection to the SC: registration, replica pushes
//!   into the role table (deleted partitions lose their records), status
//!   reports, reconnection with backoff.
//! - [`mirroring`]: the channel between clusters: StartMirror accepted on
//!   the public port (home side), links dialed for led remote partitions
//!   (remote side), records appended keeping the sender's offsets, never
//!   through the produce path.
//! - [`refusals`]: who is refused: counts per topic, code and client id,
//!   and a rate-limited info log naming the producer.
//! - [`metrics`]: Prometheus counters, served on `/metrics` by
//!   `mg-transport`'s `metrics_http`.
//!
//! Module dependencies go one way: server -> connection -> {handlers,
//! mirroring} -> {disk, changes, metrics}; server -> control -> {disk,
//! changes, mirroring::directory}.
//!
//! Roles come from the SC over the control plane (or, standalone, through
//! [`RunningSpu::roles`]); until a partition's role arrives, produce to it is
//! refused as not-leader.

pub mod changes;
mod connection;
pub mod control;
mod disk;
pub mod handlers;
pub mod metrics;
pub mod mirroring;
pub mod refusals;
pub mod server;
pub mod storage;

pub use control::ControlState;
pub use handlers::{PLATFORM_VERSION, SERVED_VERSIONS};
pub use server::{RunningSpu, Spu, SpuConfig};
pub use storage::{PartitionStore, ReadResult};
