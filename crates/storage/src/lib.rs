//! # mg-storage: durable partition logs
//!
//! Where accepted record sets end up. Each partition is a directory of
//! segments; each segment a log file of record batches, exactly as the
//! producer encoded them except for the base offset, plus a sparse offset
//! index.
//!
//! Map of the crate:
//! - [`batch`]: header and CRC-32C checks on incoming batches ([`Batches`]).
//! - `segment` (private): one log file and its index; append, scan, repair, read.
//! - [`log`]: [`PartitionLog`], segments in order: append (all or nothing,
//!   base offsets assigned at the log end), roll, sync, read, and crash
//!   recovery on open (a torn tail is cut; acknowledged data is kept).
//! - [`store`]: [`Store`], the partitions of one SPU under a data directory,
//!   each a [`Partition`]: its log and its group commit; removal.
//! - `scheduler` (private): the order of a store's syncs at the disk: big
//!   ones a chunk per turn, so a small commit never waits behind them, and
//!   optionally a pause between chunks while small commits run late
//!   ([`SyncPacing`]).
//!
//! Durability follows [`FsyncPolicy`]; a producer asking for read-committed
//! is answered only after [`Partition::commit`], a group commit: the sync
//! runs without the log's lock, and callers waiting meanwhile share it.

pub mod batch;
pub mod log;
mod scheduler;
mod segment;
pub mod store;

pub use batch::{BatchError, BatchInfo, Batches, check_batch};
pub use log::{
    AppendError, Appended, CommitPoint, FsyncPolicy, LogConfig, PartitionLog, Recovery, sync_dir,
};
pub use scheduler::{CHUNK_BYTES, SyncPacing};
pub use store::{Partition, PartitionHandle, Store, StoreError};
