//! The storage boundary: every disk call of the SPU runs here, never on the
//! async workers.
//!
//! ```text
//! produce -> lane (one writer thread per lane; a partition always uses the same lane)
//!              appends a batch of requests, answers acks = 1 at once
//!           -> committer (a task): per partition, one sync at a time on a
//!              blocking thread, covering every request that waited for it
//!              (group commit); partitions side by side
//! fetch, offsets, removal -> tokio's blocking threads
//! ```
//!
//! Why lanes and not a blocking-pool task per request: a thread handoff per
//! request cost more CPU than the append itself (four times the server CPU
//! per small request, measured with `cargo bench --bench spu_load`). A
//! lane's thread drains every request queued while it worked, so under load
//! it never sleeps between them; and the committer syncs each partition
//! once for everything appended meanwhile, while the lane goes on
//! appending. Syncs of different partitions run side by side, so a
//! partition written by a small producer is not queued behind the syncs of
//! big ones. Accepted records travel as `Bytes` slices of the request
//! frame: no copy.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use mg_storage::{AppendError, Appended};
use mg_wire::ErrorCode;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{error, warn};

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

/// What an append came to.
pub(crate) type AppendOutcome = Result<Appended, ErrorCode>;

/// One request's appends, as a lane takes them.
struct Write {
    jobs: Vec<AppendJob>,
    commit: bool,
    reply: oneshot::Sender<Vec<AppendOutcome>>,
}

/// Appends that wait for a commit before they are answered.
struct Pending {
    jobs: Vec<AppendJob>,
    outcomes: Vec<AppendOutcome>,
    reply: oneshot::Sender<Vec<AppendOutcome>>,
}

/// Requests a lane takes at once, at most.
const MAX_BATCH: usize = 256;

/// The SPU's handle on its partition store.
#[derive(Clone)]
pub struct Disk {
    store: Arc<dyn PartitionStore>,
    lanes: Arc<[mpsc::Sender<Write>]>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Disk({} lanes)", self.lanes.len())
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

fn topic_name(job: &AppendJob) -> &str {
    // Names were validated as UTF-8 by the wire view.
    std::str::from_utf8(&job.topic).unwrap_or_default()
}

impl Disk {
    /// A boundary over `store` with `lanes` writer threads (at least one).
    /// Must be called within the runtime: the committer is one of its tasks.
    pub fn new(store: Arc<dyn PartitionStore>, lanes: usize) -> io::Result<Self> {
        let (commits, to_commit) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(commit_loop(Arc::clone(&store), to_commit));
        let lanes = (0..lanes.max(1))
            .map(|lane| spawn_lane(lane, Arc::clone(&store), commits.clone()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            store,
            lanes: lanes.into(),
        })
    }

    /// Appends each job in order; with `commit`, answers only once every
    /// written partition is durable. Entries of a partition whose commit
    /// failed turn into StorageError.
    pub(crate) async fn append_all(
        &self,
        jobs: Vec<AppendJob>,
        commit: bool,
    ) -> Vec<AppendOutcome> {
        let count = jobs.len();
        let Some(first) = jobs.first() else {
            return Vec::new();
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&first.topic[..], first.partition).hash(&mut hasher);
        let lane = &self.lanes[hasher.finish() as usize % self.lanes.len()];
        let (reply, answer) = oneshot::channel();
        let commit = commit || self.store.commits_every_append();
        if lane
            .send(Write {
                jobs,
                commit,
                reply,
            })
            .is_err()
        {
            error!("a storage lane is gone");
            return vec![Err(ErrorCode::StorageError); count];
        }
        answer.await.unwrap_or_else(|_| {
            error!("a storage lane dropped a write");
            vec![Err(ErrorCode::StorageError); count]
        })
    }

    /// Appends mirrored batches at the log end, keeping their offsets and
    /// bytes (see [`PartitionStore::append_mirrored`]). Mirror partitions
    /// take no produce (the guard refuses it), so no lane orders this
    /// against other appends: a blocking thread does.
    pub(crate) async fn append_mirrored(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        epoch: u32,
    ) -> Result<Appended, AppendError> {
        let store = Arc::clone(&self.store);
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            store.append_mirrored(&topic, partition, &records, epoch)
        })
        .await
        .unwrap_or_else(|err| Err(AppendError::Io(io::Error::other(err.to_string()))))
    }

    /// Fences a partition at mirror `epoch` (see
    /// [`PartitionStore::fence_mirror`]); done when this returns.
    pub(crate) async fn fence_mirror(
        &self,
        topic: &str,
        partition: u32,
        epoch: u32,
    ) -> io::Result<()> {
        let store = Arc::clone(&self.store);
        let topic = topic.to_string();
        blocking(move || store.fence_mirror(&topic, partition, epoch)).await
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
                    let read = store.offsets(&topic, partition);
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

/// Starts a lane: its writer thread, which ends when every sender is gone
/// (the SPU dropped its `Disk`), after finishing what it holds.
fn spawn_lane(
    lane: usize,
    store: Arc<dyn PartitionStore>,
    commits: tokio::sync::mpsc::UnboundedSender<Pending>,
) -> io::Result<mpsc::Sender<Write>> {
    let (writes, incoming) = mpsc::channel::<Write>();
    std::thread::Builder::new()
        .name(format!("mg-write-{lane}"))
        .spawn(move || write_loop(&*store, &incoming, &commits))?;
    Ok(writes)
}

fn write_loop(
    store: &dyn PartitionStore,
    incoming: &mpsc::Receiver<Write>,
    commits: &tokio::sync::mpsc::UnboundedSender<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = incoming.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = incoming.try_recv()
        {
            batch.push(next);
        }
        for write in batch.drain(..) {
            let outcomes: Vec<AppendOutcome> = write
                .jobs
                .iter()
                .map(|job| store.append(topic_name(job), job.partition, &job.records))
                .collect();
            let written = outcomes.iter().any(Result::is_ok);
            if write.commit && written {
                let pending = Pending {
                    jobs: write.jobs,
                    outcomes,
                    reply: write.reply,
                };
                if let Err(tokio::sync::mpsc::error::SendError(pending)) = commits.send(pending) {
                    // No committer: nothing may be acknowledged as durable.
                    let failed = vec![Err(ErrorCode::StorageError); pending.outcomes.len()];
                    let _ = pending.reply.send(failed);
                }
            } else {
                let _ = write.reply.send(outcomes);
            }
        }
    }
}

/// A partition, as the committer tracks it: the topic name is a slice of
/// a request frame (no copy).
type PartitionKey = (Bytes, u32);

/// A request waiting for the syncs of the partitions it wrote.
struct Waiter {
    pending: Pending,
    /// Partitions not yet synced for it.
    remaining: usize,
    /// Partitions whose sync failed.
    failed: Vec<PartitionKey>,
}

/// One partition's commits: the requests the running sync covers, and
/// those that came after it started (the next sync covers them all).
#[derive(Default)]
struct PartitionCommits {
    running: Option<Vec<u64>>,
    waiting: Vec<u64>,
}

/// The committer: one sync at a time per partition, partitions side by
/// side, each sync covering every request that waited for it.
async fn commit_loop(
    store: Arc<dyn PartitionStore>,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let mut waiters: HashMap<u64, Waiter> = HashMap::new();
    let mut partitions: HashMap<PartitionKey, PartitionCommits> = HashMap::new();
    let mut syncs: JoinSet<(PartitionKey, io::Result<()>)> = JoinSet::new();
    let mut next_id = 0u64;
    let start = |syncs: &mut JoinSet<_>, key: PartitionKey, state: &mut PartitionCommits| {
        state.running = Some(std::mem::take(&mut state.waiting));
        let store = Arc::clone(&store);
        syncs.spawn_blocking(move || {
            let topic = std::str::from_utf8(&key.0).unwrap_or_default();
            let result = store.sync(topic, key.1);
            (key, result)
        });
    };
    loop {
        tokio::select! {
            pending = incoming.recv() => {
                let Some(pending) = pending else { break };
                let id = next_id;
                next_id += 1;
                let mut keys: Vec<PartitionKey> = pending
                    .jobs
                    .iter()
                    .zip(&pending.outcomes)
                    .filter(|(_, outcome)| outcome.is_ok())
                    .map(|(job, _)| (job.topic.clone(), job.partition))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                waiters.insert(id, Waiter { pending, remaining: keys.len(), failed: Vec::new() });
                for key in keys {
                    let state = partitions.entry(key.clone()).or_default();
                    state.waiting.push(id);
                    if state.running.is_none() {
                        start(&mut syncs, key, state);
                    }
                }
            }
            Some(done) = syncs.join_next(), if !syncs.is_empty() => {
                let Ok((key, result)) = done else {
                    // A sync task panicked: its waiters learn of it below,
                    // when the committer ends; keep serving the others.
                    error!("a sync task failed");
                    continue;
                };
                if let Err(err) = &result {
                    let topic = String::from_utf8_lossy(&key.0);
                    warn!(%topic, partition = key.1, %err, "sync failed");
                }
                let Some(state) = partitions.get_mut(&key) else { continue };
                for id in state.running.take().unwrap_or_default() {
                    let Some(waiter) = waiters.get_mut(&id) else { continue };
                    if result.is_err() {
                        waiter.failed.push(key.clone());
                    }
                    waiter.remaining -= 1;
                    if waiter.remaining == 0
                        && let Some(waiter) = waiters.remove(&id)
                    {
                        answer(waiter);
                    }
                }
                if state.waiting.is_empty() {
                    partitions.remove(&key);
                } else {
                    start(&mut syncs, key, state);
                }
            }
        }
    }
    // Shutting down: finish the syncs under way, answer their waiters.
    while let Some(done) = syncs.join_next().await {
        if let Ok((key, result)) = done
            && let Some(state) = partitions.get_mut(&key)
        {
            for id in state.running.take().unwrap_or_default() {
                if let Some(waiter) = waiters.get_mut(&id) {
                    if result.is_err() {
                        waiter.failed.push(key.clone());
                    }
                    waiter.remaining -= 1;
                }
            }
        }
    }
    for (_, mut waiter) in waiters.drain() {
        if waiter.remaining > 0 {
            // Never synced: not durable, so not acknowledged as such.
            waiter.failed.extend(
                waiter
                    .pending
                    .jobs
                    .iter()
                    .map(|job| (job.topic.clone(), job.partition)),
            );
        }
        answer(waiter);
    }
}

/// Answers a request whose syncs are all done: entries of a partition
/// whose sync failed turn into StorageError.
fn answer(waiter: Waiter) {
    let Pending {
        jobs,
        mut outcomes,
        reply,
    } = waiter.pending;
    for (job, outcome) in jobs.iter().zip(outcomes.iter_mut()) {
        let failed = waiter
            .failed
            .iter()
            .any(|(topic, partition)| *topic == job.topic && *partition == job.partition);
        if outcome.is_ok() && failed {
            *outcome = Err(ErrorCode::StorageError);
        }
    }
    let _ = reply.send(outcomes);
}
