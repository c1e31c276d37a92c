//! The storage boundary: every disk call of the SPU runs here, on tokio's
//! blocking threads, never on the async workers.
//!
//! Why blocking threads and not one I/O thread per partition group: a
//! request's appends, and for acks = -1 its group commit, go out as one
//! blocking call, so a slow disk holds only the requests that wait on it,
//! while the two workers keep serving every other connection. Accepted
//! records travel as `Bytes` slices of the request frame: no copy.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use mg_storage::Appended;
use mg_wire::ErrorCode;
use tracing::warn;

use crate::storage::{PartitionStore, ReadResult};

/// One accepted entry, on its way to the log.
#[derive(Debug)]
pub(crate) struct AppendJob {
    /// The topic name, a slice of the frame.
    pub(crate) topic: Bytes,
    /// The partition index.
    pub(crate) partition: u32,
    /// The record batches, a slice of the frame.
    pub(crate) records: Bytes,
}

/// The SPU's handle on its partition store.
#[derive(Clone)]
pub struct Disk {
    store: Arc<dyn PartitionStore>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disk")
    }
}

/// Runs `work` on a blocking thread; a panic there is a storage failure
/// for the caller, not a crash of the worker.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(format!("storage task failed: {join}"))))
}

impl Disk {
    /// A boundary over `store`.
    pub fn new(store: Arc<dyn PartitionStore>) -> Self {
        Self { store }
    }

    /// Appends each job in order; with `commit`, then makes every written
    /// partition durable (a group commit per partition) before returning.
    /// Entries of a partition whose commit failed turn into StorageError.
    pub(crate) async fn append_all(
        &self,
        jobs: Vec<AppendJob>,
        commit: bool,
    ) -> Vec<Result<Appended, ErrorCode>> {
        let count = jobs.len();
        let store = Arc::clone(&self.store);
        let done = blocking(move || Ok(append_blocking(&*store, &jobs, commit))).await;
        done.unwrap_or_else(|err| {
            warn!(%err, "appends failed");
            vec![Err(ErrorCode::StorageError); count]
        })
    }

    /// Reads whole batches of a partition from `offset`.
    pub(crate) async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
    ) -> io::Result<ReadResult> {
        let store = Arc::clone(&self.store);
        let topic = topic.to_string();
        blocking(move || store.read(&topic, partition, offset, max_bytes)).await
    }

    /// The offsets and sizes of many partitions, in one trip.
    pub(crate) async fn offsets(
        &self,
        partitions: Vec<(String, u32)>,
    ) -> Vec<((String, u32), io::Result<ReadResult>)> {
        let store = Arc::clone(&self.store);
        blocking(move || {
            Ok(partitions
                .into_iter()
                .map(|(topic, partition)| {
                    let read = store.read(&topic, partition, i64::MAX, 0);
                    ((topic, partition), read)
                })
                .collect())
        })
        .await
        .unwrap_or_default()
    }

    /// Removes a partition's records for good (its topic was deleted).
    pub(crate) async fn remove(&self, topic: &str, partition: u32) -> io::Result<()> {
        let store = Arc::clone(&self.store);
        let topic = topic.to_string();
        blocking(move || store.remove(&topic, partition)).await
    }

    /// Syncs every partition (at shutdown).
    pub(crate) async fn sync_all(&self) -> io::Result<()> {
        let store = Arc::clone(&self.store);
        blocking(move || store.sync_all()).await
    }

    /// Partitions on disk that are in none of `known`: moved aside.
    pub(crate) async fn set_aside_unknown(&self, known: Vec<(String, u32)>) -> io::Result<()> {
        let store = Arc::clone(&self.store);
        blocking(move || store.set_aside_unknown(&known)).await
    }
}

fn append_blocking(
    store: &dyn PartitionStore,
    jobs: &[AppendJob],
    commit: bool,
) -> Vec<Result<Appended, ErrorCode>> {
    let mut outcomes: Vec<Result<Appended, ErrorCode>> = jobs
        .iter()
        .map(|job| {
            // Names were validated as UTF-8 by the wire view.
            let topic = std::str::from_utf8(&job.topic).map_err(|_| ErrorCode::StorageError)?;
            store.append(topic, job.partition, &job.records)
        })
        .collect();
    if !commit {
        return outcomes;
    }
    let mut written: Vec<(&[u8], u32)> = jobs
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(job, _)| (&job.topic[..], job.partition))
        .collect();
    written.sort_unstable();
    written.dedup();
    for (topic, partition) in written {
        let topic_name = std::str::from_utf8(topic).unwrap_or_default();
        if let Err(err) = store.sync(topic_name, partition) {
            warn!(topic = topic_name, partition, %err, "sync failed");
            for (job, outcome) in jobs.iter().zip(outcomes.iter_mut()) {
                if &job.topic[..] == topic && job.partition == partition {
                    *outcome = Err(ErrorCode::StorageError);
                }
            }
        }
    }
    outcomes
}
