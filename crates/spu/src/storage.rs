//! The storage the SPU writes accepted records to, behind a trait so tests
//! can watch every call (the "before storage" proof uses a spy).

use std::io;
use std::sync::Arc;

use mg_storage::{AppendError, Appended, Store, SyncPacing};
use mg_wire::ErrorCode;

/// What the SPU needs from storage.
pub trait PartitionStore: Send + Sync + 'static {
    /// Appends a checked record set to a partition's log.
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode>;
    /// Appends mirrored batches at the log end, keeping the sender's
    /// offsets and bytes ([`AppendError::Misaligned`] if they do not
    /// continue the log), for a link admitted at mirror `epoch`
    /// ([`AppendError::Fenced`] if the partition is fenced past it). A
    /// store that cannot says so.
    fn append_mirrored(
        &self,
        topic: &str,
        partition: u32,
        records: &[u8],
        epoch: u32,
    ) -> Result<Appended, AppendError> {
        let _ = (topic, partition, records, epoch);
        Err(AppendError::Io(io::ErrorKind::Unsupported.into()))
    }
    /// Fences a partition at mirror `epoch`: once this returns, mirrored
    /// appends of older epochs are refused. A store that cannot says so.
    fn fence_mirror(&self, topic: &str, partition: u32, epoch: u32) -> io::Result<()> {
        let _ = (topic, partition, epoch);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Makes the partition's appends durable (read-committed produce).
    fn sync(&self, topic: &str, partition: u32) -> io::Result<()>;
    /// Whether every append must be synced before it is answered, whatever
    /// the producer asked (`--fsync always`). Then [`append`](Self::append)
    /// need not sync itself: the SPU commits before it answers, so appends
    /// of many requests share one sync. A store that wraps another must
    /// forward this.
    fn commits_every_append(&self) -> bool {
        false
    }
    /// How the store paces big syncs for small commits, for `/metrics`
    /// (none by default). A store that wraps another must forward this.
    fn sync_pacing(&self) -> SyncPacing {
        SyncPacing::default()
    }
    /// A partition's offsets and size, for the SC's status report. A
    /// partition that holds nothing yet may be answered as empty without
    /// creating its log: an SPU told to lead 100k partitions creates a log
    /// only for those it is written to or read from.
    fn offsets(&self, topic: &str, partition: u32) -> io::Result<ReadResult> {
        self.read(topic, partition, i64::MAX, 0)
    }
    /// Reads whole batches from `offset`; returns them with the high
    /// watermark and log start offset.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
    ) -> io::Result<ReadResult>;
    /// Removes a partition's records for good: a partition written after
    /// this starts empty, at offset 0. A store that cannot remove says so.
    fn remove(&self, topic: &str, partition: u32) -> io::Result<()> {
        let _ = (topic, partition);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Makes every append so far durable, in every partition (shutdown).
    fn sync_all(&self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Moves partitions held on disk that are not in `known` out of
    /// service (kept for an operator, never served).
    fn set_aside_unknown(&self, known: &[(String, u32)]) -> io::Result<()> {
        let _ = known;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A fetch's answer from storage.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// Whole batches, as stored.
    pub records: Vec<u8>,
    /// The offset after the last committed record.
    pub high_watermark: i64,
    /// The first offset held.
    pub log_start: i64,
    /// Bytes held by the partition.
    pub size: u64,
}

/// The code a storage failure is answered with, as Fluvio maps them.
pub fn error_code(err: &AppendError) -> ErrorCode {
    match err {
        AppendError::InvalidBatch(batch) => ErrorCode::Other(invalid_batch_text(batch)),
        AppendError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        AppendError::PartitionFull { .. } => ErrorCode::PartitionFull,
        AppendError::Misaligned { .. } => {
            ErrorCode::Other("mirrored batch does not continue the log")
        }
        AppendError::Fenced { .. } => ErrorCode::Other("mirror link fenced by a newer epoch"),
        AppendError::Io(_) => ErrorCode::StorageError,
    }
}

fn invalid_batch_text(err: &mg_storage::BatchError) -> &'static str {
    use mg_storage::BatchError::*;
    match err {
        Truncated { .. } => "invalid record batch: truncated",
        BadLength { .. } => "invalid record batch: length out of bounds",
        BadMagic { .. } => "invalid record batch: magic is not 2",
        BadCrc { .. } => "invalid record batch: CRC-32C mismatch",
        BadOffsetDelta { .. } => "invalid record batch: negative last offset delta",
    }
}

impl PartitionStore for Store {
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode> {
        let handle = self.partition(topic, partition).map_err(|err| {
            tracing::error!(topic, partition, %err, "cannot open partition log");
            ErrorCode::StorageError
        })?;
        let mut log = handle.lock();
        // Under `--fsync always` the commit comes from the SPU, before the
        // answer (see `commits_every_append`).
        let appended = log.append_unsynced(records).map_err(|err| {
            if let AppendError::Io(io) = &err {
                tracing::error!(topic, partition, %io, "append failed");
            }
            error_code(&err)
        })?;
        self.appended(&handle, log);
        Ok(appended)
    }

    fn append_mirrored(
        &self,
        topic: &str,
        partition: u32,
        records: &[u8],
        epoch: u32,
    ) -> Result<Appended, AppendError> {
        let handle = self
            .partition(topic, partition)
            .map_err(|err| AppendError::Io(io::Error::other(err.to_string())))?;
        let mut log = handle.lock();
        let appended = log.append_mirrored(records, epoch)?;
        self.appended(&handle, log);
        Ok(appended)
    }

    fn fence_mirror(&self, topic: &str, partition: u32, epoch: u32) -> io::Result<()> {
        let handle = self
            .partition(topic, partition)
            .map_err(|err| io::Error::other(err.to_string()))?;
        handle.lock().fence_mirror(epoch);
        Ok(())
    }

    fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
        match self.existing(topic, partition) {
            // A group commit: concurrent callers share one sync.
            Some(handle) if handle.lock().syncs_on_commit() => handle.commit(),
            Some(_) => Ok(()),
            None => Ok(()),
        }
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
    ) -> io::Result<ReadResult> {
        let handle = self
            .partition(topic, partition)
            .map_err(|err| io::Error::other(err.to_string()))?;
        let log = handle.lock();
        Ok(ReadResult {
            records: log.read(offset, max_bytes)?,
            high_watermark: log.leo(),
            log_start: log.start_offset(),
            size: log.size(),
        })
    }

    fn commits_every_append(&self) -> bool {
        self.config().fsync == mg_storage::FsyncPolicy::Always
    }

    fn sync_pacing(&self) -> SyncPacing {
        Store::sync_pacing(self)
    }

    fn offsets(&self, topic: &str, partition: u32) -> io::Result<ReadResult> {
        if self.existing(topic, partition).is_none()
            && !self
                .partition_dir(topic, partition)
                .map_err(|err| io::Error::other(err.to_string()))?
                .exists()
        {
            // Never written: empty, and left uncreated.
            return Ok(ReadResult::default());
        }
        self.read(topic, partition, i64::MAX, 0)
    }

    fn remove(&self, topic: &str, partition: u32) -> io::Result<()> {
        Store::remove(self, topic, partition).map(drop)
    }

    fn sync_all(&self) -> io::Result<()> {
        Store::sync_all(self)
    }

    fn set_aside_unknown(&self, known: &[(String, u32)]) -> io::Result<()> {
        for (topic, partition) in self.on_disk()? {
            if !known.iter().any(|(t, p)| *t == topic && *p == partition) {
                self.set_aside(&topic, partition)?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for dyn PartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionStore")
    }
}

impl<S: PartitionStore + ?Sized> PartitionStore for Arc<S> {
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode> {
        (**self).append(topic, partition, records)
    }
    fn append_mirrored(
        &self,
        topic: &str,
        partition: u32,
        records: &[u8],
        epoch: u32,
    ) -> Result<Appended, AppendError> {
        (**self).append_mirrored(topic, partition, records, epoch)
    }
    fn fence_mirror(&self, topic: &str, partition: u32, epoch: u32) -> io::Result<()> {
        (**self).fence_mirror(topic, partition, epoch)
    }
    fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
        (**self).sync(topic, partition)
    }
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
    ) -> io::Result<ReadResult> {
        (**self).read(topic, partition, offset, max_bytes)
    }
    fn offsets(&self, topic: &str, partition: u32) -> io::Result<ReadResult> {
        (**self).offsets(topic, partition)
    }
    fn remove(&self, topic: &str, partition: u32) -> io::Result<()> {
        (**self).remove(topic, partition)
    }
    fn commits_every_append(&self) -> bool {
        (**self).commits_every_append()
    }
    fn sync_pacing(&self) -> SyncPacing {
        (**self).sync_pacing()
    }
    fn sync_all(&self) -> io::Result<()> {
        (**self).sync_all()
    }
    fn set_aside_unknown(&self, known: &[(String, u32)]) -> io::Result<()> {
        (**self).set_aside_unknown(known)
    }
}
