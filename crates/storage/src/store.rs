//! The partitions of one SPU, each in `<data dir>/<topic>-<partition>/`.
//!
//! Every call here blocks on the disk: callers in async code run them on
//! blocking threads. The store-wide map is held only to find or insert a
//! partition's slot, never while a log is opened, recovered or removed, so
//! a partition that takes long to recover delays only its own callers.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::log::{LogConfig, PartitionLog};
use crate::scheduler::{CHUNK_BYTES, SyncScheduler};

/// Unsynced bytes a partition may gather before its writeback starts: the
/// most a segment roll (which syncs the segment it closes, under the log's
/// lock) then has left to sync. A roll of 64 MiB written and never synced
/// took about 40 ms on the development machine's disk, during which the
/// partition's appends and reads waited.
pub const WRITEBACK_BYTES: u64 = 4 << 20;

/// A partition: its log, and the group commit that makes it durable.
#[derive(Debug)]
pub struct Partition {
    log: Mutex<PartitionLog>,
    commit: Committer,
    /// The store's order of syncs at the disk, shared by its partitions.
    scheduler: Arc<SyncScheduler>,
    /// Queued for the store's writeback (at most once at a time).
    writeback_queued: AtomicBool,
}

/// A partition, shared by the connections that write and read it.
pub type PartitionHandle = Arc<Partition>;

/// Syncs one at a time per partition; callers that arrive while a sync runs
/// wait for it, and if it did not cover their appends, the next sync (run by
/// one of them) covers them all: group commit.
#[derive(Debug, Default)]
struct Committer {
    running: Mutex<bool>,
    done: Condvar,
}

impl Partition {
    fn new(log: PartitionLog, scheduler: Arc<SyncScheduler>) -> Self {
        Self {
            log: Mutex::new(log),
            commit: Committer::default(),
            scheduler,
            writeback_queued: AtomicBool::new(false),
        }
    }

    /// Locks the log, even if a previous holder panicked: the log's state
    /// is updated only after each write succeeds, so it is whole.
    pub fn lock(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Returns once every append made before the call is durable.
    ///
    /// The log's lock is held only to note positions, never during the sync,
    /// so appends go on while the disk works, and every caller waiting
    /// meanwhile shares the next sync instead of running one each.
    pub fn commit(&self) -> io::Result<()> {
        self.sync_in_pace(CHUNK_BYTES)
    }

    /// The writeback's sync: nobody waits for it, so it hands the device
    /// its whole range in one turn (small commits still never flush beside
    /// it). Written out a chunk per turn, a writeback paced the device at
    /// one 128 KiB write at a time: 0.75x the records/s of acks = 1 batches
    /// (`cargo bench --bench spu_load`, against the build before).
    fn write_back(&self) -> io::Result<()> {
        self.sync_in_pace(u64::MAX)
    }

    /// Group commit, writing a big unsynced range out `chunk` bytes a turn.
    fn sync_in_pace(&self, chunk: u64) -> io::Result<()> {
        let target = self.lock().written();
        let mut running = self
            .commit
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if self.lock().durable() >= target {
                return Ok(());
            }
            if !*running {
                break;
            }
            running = self
                .commit
                .done
                .wait(running)
                .unwrap_or_else(|p| p.into_inner());
        }
        *running = true;
        drop(running);
        // Everything appended up to now, ours included, is covered.
        let point = self.lock().commit_point();
        let result = match point {
            Some(point) => point
                .sync_in_turn(&self.scheduler, chunk)
                .map(|()| self.lock().committed(point.upto)),
            None => Ok(()),
        };
        *self
            .commit
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = false;
        // A failed sync wakes the waiters too: each then tries its own.
        self.commit.done.notify_all();
        result
    }
}

/// Why a partition could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The topic name cannot be used as a directory name.
    #[error("topic name {0:?} is not usable as a directory name")]
    BadTopicName(String),
    /// Opening or recovering the log failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The partition directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// A partition's place in the map: filled once its log is open.
type Slot = Arc<Mutex<Option<PartitionHandle>>>;

/// The partition logs of one SPU, opened on first use.
///
/// Writeback: once an append leaves [`WRITEBACK_BYTES`] of a partition
/// unsynced, [`appended`](Store::appended) hands the partition to
/// the store's writeback thread, which syncs it with the group commit, off
/// the log's lock. Every byte is synced once either way (a segment roll
/// syncs what is left); this only moves the work out of the append path,
/// so that a roll, which runs under the log's lock, is short. Durability
/// can only gain: nothing waits for the writeback.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: LogConfig,
    partitions: Mutex<HashMap<(String, u32), Slot>>,
    writeback: mpsc::Sender<PartitionHandle>,
    scheduler: Arc<SyncScheduler>,
}

/// Syncs the partitions it is handed until the store is gone.
fn writeback(partitions: mpsc::Receiver<PartitionHandle>) {
    while let Ok(partition) = partitions.recv() {
        partition.writeback_queued.store(false, Ordering::Release);
        if let Err(err) = partition.write_back() {
            // The next commit, writeback or roll tries again.
            warn!(%err, "writeback of a partition failed");
        }
    }
}

/// Where removed partitions are moved before their files are deleted, so
/// a half-finished removal is never served.
const REMOVED_DIR: &str = ".removed";
/// Where partitions the SC does not know are kept, out of service.
const ORPHANED_DIR: &str = "orphaned";

impl Store {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, config: LogConfig) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        // Removals a crash interrupted: finish them.
        let removed = root.join(REMOVED_DIR);
        if removed.exists() {
            std::fs::remove_dir_all(&removed)?;
        }
        let (queue, queued) = mpsc::channel();
        std::thread::Builder::new()
            .name("mg-writeback".into())
            .spawn(move || writeback(queued))?;
        Ok(Self {
            root,
            config,
            partitions: Mutex::new(HashMap::new()),
            writeback: queue,
            scheduler: Arc::default(),
        })
    }

    /// Paces big syncs for small ones: whenever a small commit (at most
    /// [`CHUNK_BYTES`] to sync) takes longer than `target`, waiting for
    /// its turn included, the pause between two chunks of big syncs grows,
    /// and it shrinks again while small commits meet the target. Trades
    /// big writers' bandwidth for small commits' latency, on a disk whose
    /// flushes slow with every byte written before them. `None` (the
    /// default) never pauses chunks.
    pub fn set_flush_target(&self, target: Option<std::time::Duration>) {
        self.scheduler.set_target(target);
    }

    /// How big syncs are paced now (see [`set_flush_target`](Self::set_flush_target)).
    pub fn sync_pacing(&self) -> crate::SyncPacing {
        self.scheduler.pacing()
    }

    /// Called after an append, with the log still locked: releases it,
    /// and once [`WRITEBACK_BYTES`] are unsynced queues the partition for
    /// writeback (unless it is queued already). Never blocks on the disk.
    pub fn appended(&self, partition: &PartitionHandle, log: MutexGuard<'_, PartitionLog>) {
        let unsynced = log.written() - log.durable();
        drop(log);
        if unsynced < WRITEBACK_BYTES || partition.writeback_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.writeback.send(Arc::clone(partition)).is_err() {
            partition.writeback_queued.store(false, Ordering::Release);
        }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The log configuration partitions are opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The directory of a partition.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> Result<PathBuf, StoreError> {
        let usable = !topic.is_empty()
            && topic != "."
            && topic != ".."
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !usable {
            return Err(StoreError::BadTopicName(topic.to_string()));
        }
        Ok(self.root.join(format!("{topic}-{partition}")))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, u32), Slot>> {
        self.partitions
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The partition's log, opened (and recovered) on first use.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<PartitionHandle, StoreError> {
        let path = self.partition_dir(topic, partition)?;
        let slot = Arc::clone(
            self.map()
                .entry((topic.to_string(), partition))
                .or_default(),
        );
        // Only this partition's callers wait while it opens.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = &*slot {
            return Ok(Arc::clone(handle));
        }
        let (log, _) = PartitionLog::open(&path, self.config)
            .map_err(|source| StoreError::Open { path, source })?;
        let handle = Arc::new(Partition::new(log, Arc::clone(&self.scheduler)));
        *slot = Some(Arc::clone(&handle));
        Ok(handle)
    }

    /// The partition's log if it was opened already.
    pub fn existing(&self, topic: &str, partition: u32) -> Option<PartitionHandle> {
        let slot = self.map().get(&(topic.to_string(), partition)).cloned()?;
        let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.clone()
    }

    /// Removes a partition and all its records. The directory is first
    /// renamed out of the way (atomic: from then on nothing can serve it,
    /// and a crash leaves it to be deleted at the next start), then deleted.
    /// A partition opened after this starts empty, at offset 0. Returns
    /// whether there was anything to remove.
    pub fn remove(&self, topic: &str, partition: u32) -> io::Result<bool> {
        let Some(aside) = self.move_out(topic, partition, REMOVED_DIR)? else {
            return Ok(false);
        };
        std::fs::remove_dir_all(&aside)?;
        info!(topic, partition, "removed partition data");
        Ok(true)
    }

    /// Moves a partition the SC does not know into `orphaned/` under the
    /// root: never served again, but kept for an operator to inspect.
    /// Returns where it went.
    pub fn set_aside(&self, topic: &str, partition: u32) -> io::Result<Option<PathBuf>> {
        let aside = self.move_out(topic, partition, ORPHANED_DIR)?;
        if let Some(aside) = &aside {
            warn!(topic, partition, to = %aside.display(), "set aside partition data the SC does not know");
        }
        Ok(aside)
    }

    /// Renames a partition's directory into `under`, after closing it here.
    fn move_out(&self, topic: &str, partition: u32, under: &str) -> io::Result<Option<PathBuf>> {
        let path = self
            .partition_dir(topic, partition)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        let slot = self.map().remove(&(topic.to_string(), partition));
        // Wait for an open in progress, so it does not recreate the files
        // after they are gone.
        let _open = slot
            .as_ref()
            .map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()));
        if !path.exists() {
            return Ok(None);
        }
        let parent = self.root.join(under);
        std::fs::create_dir_all(&parent)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let aside = parent.join(format!("{topic}-{partition}.{nanos}"));
        std::fs::rename(&path, &aside)?;
        crate::log::sync_dir(&self.root)?;
        Ok(Some(aside))
    }

    /// Makes every append to every open partition durable, whatever the
    /// fsync policy (a graceful shutdown calls it).
    pub fn sync_all(&self) -> io::Result<()> {
        let slots: Vec<Slot> = self.map().values().cloned().collect();
        for slot in slots {
            let handle = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(handle) = handle {
                handle.lock().sync()?;
            }
        }
        Ok(())
    }

    /// The partitions that have a directory under the root, opened or not.
    pub fn on_disk(&self) -> io::Result<Vec<(String, u32)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((topic, partition)) = name.rsplit_once('-') else {
                continue;
            };
            if let Ok(partition) = partition.parse::<u32>()
                && self.partition_dir(topic, partition).is_ok()
            {
                found.push((topic.to_string(), partition));
            }
        }
        found.sort();
        Ok(found)
    }
}
