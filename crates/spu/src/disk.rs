//! The storage boundary: every disk call of the SPU runs here, never on the
//! async workers.
//!
//! ```text
//! produce -> writers (a pool of threads; a queue per partition, taken by
//!              one writer at a time, so its appends keep their order)
//!              append a partition's queued requests, answer acks = 1 at once
//!           -> committer (a task): per partition, one sync at a time on a
//!              blocking thread, covering every request that waited for it
//!              (group commit); partitions side by side
//! fetch, offsets, removal -> tokio's blocking threads
//! ```
//!
//! Why writer threads and not a blocking-pool task per request: a thread
//! handoff per request cost more CPU than the append itself (four times the
//! server CPU per small request, measured with `cargo bench --bench
//! spu_load`). A writer drains every request a partition queued while it
//! worked and goes straight on to the next partition in line, so under load
//! it never sleeps between them; and the committer syncs each partition
//! once for everything appended meanwhile, while the writers go on
//! appending. Why not a writer fixed per partition: see [`Writers`]. Syncs of different partitions run side by side, so a
//! partition written by a small producer is not queued behind the syncs of
//! big ones. Accepted records travel as `Bytes` slices of the request
//! frame: no copy.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// One request's appends to one partition, as a writer takes them.
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

/// Requests of one partition a writer takes at once, at most.
const MAX_BATCH: usize = 256;

/// Rounds an idle writer looks for work before it parks: six of busy
/// waiting, doubling from one spin hint to 32, then four yields of its
/// core (a few microseconds in all, longer when other threads take the
/// core at a yield), as a std channel's receiver does.
const SPIN_ROUNDS: u32 = 10;

/// The SPU's handle on its partition store.
#[derive(Clone)]
pub struct Disk {
    store: Arc<dyn PartitionStore>,
    writers: Arc<WritersOwner>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Disk({} writers)", self.writers.threads)
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
    /// A boundary over `store` with `writers` writer threads (at least
    /// one). Must be called within the runtime: the committer is one of
    /// its tasks.
    pub fn new(store: Arc<dyn PartitionStore>, writers: usize) -> io::Result<Self> {
        let (commits, to_commit) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(commit_loop(Arc::clone(&store), to_commit));
        let pool = Arc::new(Writers::default());
        let threads = writers.max(1);
        for n in 0..threads {
            let (pool, store, commits) = (Arc::clone(&pool), Arc::clone(&store), commits.clone());
            std::thread::Builder::new()
                .name(format!("mg-write-{n}"))
                .spawn(move || write_loop(&pool, &*store, &commits))?;
        }
        Ok(Self {
            store,
            writers: Arc::new(WritersOwner { pool, threads }),
        })
    }

    /// How the store paces big syncs for small commits now.
    pub(crate) fn sync_pacing(&self) -> mg_storage::SyncPacing {
        self.store.sync_pacing()
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
        let commit = commit || self.store.commits_every_append();
        let Some(first) = jobs.first() else {
            return Vec::new();
        };
        let key: PartitionKey = (first.topic.clone(), first.partition);
        if jobs
            .iter()
            .all(|job| job.partition == key.1 && job.topic == key.0)
        {
            // The common case: one partition, one trip.
            let (reply, answer) = oneshot::channel();
            self.writers.pool.submit(
                key,
                Write {
                    jobs,
                    commit,
                    reply,
                },
            );
            return answer.await.unwrap_or_else(|_| {
                error!("a storage writer dropped a write");
                vec![Err(ErrorCode::StorageError); count]
            });
        }
        // Entries of several partitions: each partition's share goes to its
        // queue (so each partition keeps the order its writes came in), and
        // the answers are put back in the request's order.
        let mut shares: Vec<(PartitionKey, Vec<usize>, Vec<AppendJob>)> = Vec::new();
        for (index, job) in jobs.into_iter().enumerate() {
            let key = (job.topic.clone(), job.partition);
            match shares.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, indices, share)) => {
                    indices.push(index);
                    share.push(job);
                }
                None => shares.push((key, vec![index], vec![job])),
            }
        }
        let mut answers = Vec::with_capacity(shares.len());
        for (key, indices, jobs) in shares {
            let (reply, answer) = oneshot::channel();
            self.writers.pool.submit(
                key,
                Write {
                    jobs,
                    commit,
                    reply,
                },
            );
            answers.push((indices, answer));
        }
        let mut outcomes = vec![Err(ErrorCode::StorageError); count];
        for (indices, answer) in answers {
            let Ok(share) = answer.await else {
                error!("a storage writer dropped a write");
                continue;
            };
            for (index, outcome) in indices.into_iter().zip(share) {
                outcomes[index] = outcome;
            }
        }
        outcomes
    }

    /// Appends mirrored batches at the log end, keeping their offsets and
    /// bytes (see [`PartitionStore::append_mirrored`]). Mirror partitions
    /// take no produce (the guard refuses it), so no writer queue orders this
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

/// The writers' shared queues. Each partition with writes waiting has a
/// queue of its own, and at most one writer works on a partition at a
/// time, so a partition's appends keep the order they came in. A writer
/// takes the longest-waiting partition, appends what it holds, and puts it
/// back at the end of the line if more came meanwhile.
///
/// Why not a writer fixed per partition (by hash, as before): an append
/// that waits on the disk holds up every partition behind it. In the
/// head-of-line case of `cargo bench --bench spu_load` (one single-record
/// producer beside eight 1 MiB ones, `--fsync always`), timed inside the
/// SPU in one run, 0.1% of the small requests waited 13.8 ms or more (up
/// to 96 ms) for their lane to take them; with the pool, 5.1 and 7.3 ms
/// in two runs. A small append now waits behind a big one only when every
/// writer is busy.
///
/// An idle writer waits awake for a moment ([`SPIN_ROUNDS`]), then parks;
/// new work wakes the writer that went idle last, never an arbitrary one:
/// under light load the same few writers keep working and stay warm on
/// their cores.
#[derive(Default)]
struct Writers {
    state: Mutex<Queues>,
}

#[derive(Default)]
struct Queues {
    /// Partitions with writes waiting or being appended.
    partitions: HashMap<PartitionKey, PartitionQueue>,
    /// Partitions with writes waiting and no writer, longest-waiting first.
    ready: VecDeque<PartitionKey>,
    /// A writer is waiting awake for work (see [`Writers::spin`]).
    spinning: bool,
    /// Writers parked for want of work, the last to go idle on top.
    idle: Vec<std::thread::Thread>,
    /// No more writes will come: writers finish what is queued and end.
    closed: bool,
}

#[derive(Default)]
struct PartitionQueue {
    writes: VecDeque<Write>,
    /// A writer is appending this partition's writes.
    taken: bool,
}

impl Writers {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Queues are updated whole under the lock; a writer's panic (in
        // storage, outside the lock) cannot leave them half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&self, key: PartitionKey, write: Write) {
        let mut queues = self.lock();
        let queue = queues.partitions.entry(key.clone()).or_default();
        queue.writes.push_back(write);
        if !queue.taken && queue.writes.len() == 1 {
            queues.ready.push_back(key);
            // A writer waiting awake takes the first ready partition: it
            // checks again, under this lock, before it parks. Wake a
            // parked one only for a partition it leaves waiting.
            let idle = if queues.spinning && queues.ready.len() == 1 {
                None
            } else {
                queues.idle.pop()
            };
            drop(queues);
            // None idle: every writer is at work and takes it when done.
            if let Some(writer) = idle {
                writer.unpark();
            }
        }
    }

    /// The next partition to append, with up to [`MAX_BATCH`] of its
    /// writes; `None` once closed and drained.
    fn take(&self) -> Option<(PartitionKey, Vec<Write>)> {
        let mut queues = self.lock();
        loop {
            if let Some(key) = queues.ready.pop_front() {
                let Some(queue) = queues.partitions.get_mut(&key) else {
                    continue;
                };
                queue.taken = true;
                let take = queue.writes.len().min(MAX_BATCH);
                let writes = queue.writes.drain(..take).collect();
                return Some((key, writes));
            }
            if queues.closed {
                return None;
            }
            if !queues.spinning {
                // Under steady load the next write comes within microseconds:
                // catching it awake costs less than a park and a wake-up.
                // One writer at a time spins, so idle writers burn no cores.
                queues.spinning = true;
                drop(queues);
                queues = self.spin();
                queues.spinning = false;
                if !queues.ready.is_empty() || queues.closed {
                    continue;
                }
            }
            let me = std::thread::current();
            let id = me.id();
            queues.idle.push(me);
            drop(queues);
            // An unpark that came before this park makes it return at once.
            std::thread::park();
            queues = self.lock();
            // Woken spuriously, this writer may still be listed.
            queues.idle.retain(|writer| writer.id() != id);
        }
    }

    /// Waits a little, awake, for a partition to be ready; returns the
    /// locked queues either way.
    fn spin(&self) -> MutexGuard<'_, Queues> {
        for round in 0..SPIN_ROUNDS {
            if round < 6 {
                for _ in 0..1 << round {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            let queues = self.lock();
            if !queues.ready.is_empty() || queues.closed {
                return queues;
            }
        }
        self.lock()
    }

    /// A writer is done with `key`: it goes back in line if more came.
    fn release(&self, key: PartitionKey) {
        let mut queues = self.lock();
        let Some(queue) = queues.partitions.get_mut(&key) else {
            return;
        };
        queue.taken = false;
        if queue.writes.is_empty() {
            queues.partitions.remove(&key);
        } else {
            // This writer loops to `take` next, so no one need be woken.
            queues.ready.push_back(key);
        }
    }

    fn close(&self) {
        let idle = {
            let mut queues = self.lock();
            queues.closed = true;
            std::mem::take(&mut queues.idle)
        };
        for writer in idle {
            writer.unpark();
        }
    }
}

/// Closes the writers when the last [`Disk`] is dropped; they end after
/// appending what is queued.
struct WritersOwner {
    pool: Arc<Writers>,
    threads: usize,
}

impl Drop for WritersOwner {
    fn drop(&mut self) {
        self.pool.close();
    }
}

fn write_loop(
    pool: &Writers,
    store: &dyn PartitionStore,
    commits: &tokio::sync::mpsc::UnboundedSender<Pending>,
) {
    while let Some((key, writes)) = pool.take() {
        let topic = std::str::from_utf8(&key.0).unwrap_or_default();
        for write in writes {
            let outcomes: Vec<AppendOutcome> = write
                .jobs
                .iter()
                .map(|job| store.append(topic, job.partition, &job.records))
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
        pool.release(key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use mg_storage::{LogConfig, Store};
    use std::time::Duration;

    /// A real store whose appends to the topic `held` wait until the test
    /// lets them go: an append stuck on a slow disk.
    struct Held {
        inner: Store,
        entered: std::sync::mpsc::SyncSender<()>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl PartitionStore for Held {
        fn append(&self, topic: &str, partition: u32, records: &[u8]) -> AppendOutcome {
            if topic == "held" {
                let _ = self.entered.send(());
                let _ = self.release.lock().unwrap().recv();
            }
            self.inner.append(topic, partition, records)
        }
        fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
            self.inner.sync(topic, partition)
        }
        fn read(&self, topic: &str, p: u32, offset: i64, max: u64) -> io::Result<ReadResult> {
            self.inner.read(topic, p, offset, max)
        }
    }

    fn job(topic: &'static str, partition: u32) -> AppendJob {
        AppendJob {
            topic: Bytes::from_static(topic.as_bytes()),
            partition,
            records: mg_testkit::batch_bytes(&[&[b"v"]]).into(),
        }
    }

    fn base_offsets(outcomes: &[AppendOutcome]) -> Vec<i64> {
        outcomes
            .iter()
            .map(|o| o.as_ref().expect("appended").base_offset)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_append_holds_up_no_other_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (entered, stuck) = std::sync::mpsc::sync_channel(1);
        let (release, released) = std::sync::mpsc::channel();
        let store = Held {
            inner: Store::new(dir.path(), LogConfig::default()).unwrap(),
            entered,
            release: Mutex::new(released),
        };
        let disk = Disk::new(Arc::new(store), 2).unwrap();
        let held = tokio::spawn({
            let disk = disk.clone();
            async move { disk.append_all(vec![job("held", 0)], false).await }
        });
        tokio::task::spawn_blocking(move || stuck.recv().unwrap())
            .await
            .unwrap();
        // One writer is stuck; every other partition still goes through the
        // other (with writers fixed by hash, half of these shared its lane).
        for partition in 0..16 {
            let append = disk.append_all(vec![job("free", partition)], false);
            let outcomes = tokio::time::timeout(Duration::from_secs(10), append)
                .await
                .unwrap_or_else(|_| panic!("partition {partition} waited for the stuck append"));
            assert_eq!(base_offsets(&outcomes), [0]);
        }
        assert!(!held.is_finished(), "the held append was let go");
        release.send(()).unwrap();
        assert_eq!(base_offsets(&held.await.unwrap()), [0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_partition_keeps_its_order_and_answers_keep_the_requests() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn PartitionStore> =
            Arc::new(Store::new(dir.path(), LogConfig::default()).unwrap());
        let disk = Disk::new(store, 4).unwrap();
        // Requests submitted one after another (as one connection's
        // pipeline submits them), not awaited in between.
        let mut answers = Vec::new();
        for _ in 0..50 {
            let jobs = vec![job("a", 0), job("b", 1), job("a", 0)];
            let disk = disk.clone();
            let mut answer = Box::pin(futures_util::future::maybe_done(async move {
                disk.append_all(jobs, false).await
            }));
            // Polled once, the request has queued its shares.
            let _ = futures_util::poll!(answer.as_mut());
            answers.push(answer);
        }
        for (n, mut answer) in answers.into_iter().enumerate() {
            answer.as_mut().await;
            let outcomes = answer.as_mut().take_output().expect("answered");
            let n = n as i64;
            assert_eq!(base_offsets(&outcomes), [2 * n, n, 2 * n + 1]);
        }
    }

    /// A real store that tells which writer thread made each append.
    struct Witness {
        inner: Store,
        writers: std::sync::mpsc::Sender<String>,
    }

    impl PartitionStore for Witness {
        fn append(&self, topic: &str, partition: u32, records: &[u8]) -> AppendOutcome {
            let name = std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string();
            let _ = self.writers.send(name);
            self.inner.append(topic, partition, records)
        }
        fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
            self.inner.sync(topic, partition)
        }
        fn read(&self, topic: &str, p: u32, offset: i64, max: u64) -> io::Result<ReadResult> {
            self.inner.read(topic, p, offset, max)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_work_wakes_the_writer_that_went_idle_last() {
        let dir = tempfile::tempdir().unwrap();
        let (writers, appended_by) = std::sync::mpsc::channel();
        let store = Witness {
            inner: Store::new(dir.path(), LogConfig::default()).unwrap(),
            writers,
        };
        let disk = Disk::new(Arc::new(store), 3).unwrap();
        let pool = Arc::clone(&disk.writers.pool);
        for round in 0..5 {
            // Every writer parked; the order they went idle in is known.
            let last_idle = tokio::task::spawn_blocking({
                let pool = Arc::clone(&pool);
                move || loop {
                    {
                        let queues = pool.lock();
                        if queues.idle.len() == 3 && !queues.spinning {
                            break queues.idle[2].name().unwrap_or_default().to_string();
                        }
                    }
                    std::thread::yield_now();
                }
            })
            .await
            .unwrap();
            let outcomes = disk.append_all(vec![job("w", 0)], false).await;
            assert_eq!(base_offsets(&outcomes), [round]);
            assert_eq!(appended_by.try_recv().unwrap(), last_idle);
        }
    }

    #[test]
    fn a_writer_waiting_awake_takes_new_work_without_a_wake_up() {
        let pool = Writers::default();
        let write = |topic: &'static str| {
            let (reply, _) = oneshot::channel();
            let key: PartitionKey = (Bytes::from_static(topic.as_bytes()), 0);
            let write = Write {
                jobs: vec![job(topic, 0)],
                commit: false,
                reply,
            };
            (key, write)
        };
        {
            let mut queues = pool.lock();
            queues.spinning = true;
            queues.idle.push(std::thread::current());
        }
        // One partition ready: the awake writer takes it; the parked one
        // stays parked.
        let (key, first) = write("a");
        pool.submit(key, first);
        assert_eq!(pool.lock().idle.len(), 1, "no wake-up for the first");
        // A second ready partition is more than the awake writer takes
        // next: the parked writer is woken for it.
        let (key, second) = write("b");
        pool.submit(key, second);
        assert!(pool.lock().idle.is_empty(), "woken for the second");
        // With no writer awake, new work wakes a parked one at once.
        let pool = Writers::default();
        pool.lock().idle.push(std::thread::current());
        let (key, first) = write("a");
        pool.submit(key, first);
        assert!(pool.lock().idle.is_empty());
    }
}
