//! The storage the SPU writes accepted records to, behind a trait so tests
//! can watch every call (the "before storage" proof uses a spy).

use std::io;
use std::sync::Arc;

use mg_storage::{AppendError, Appended, Store, lock};
use mg_wire::ErrorCode;

/// What the SPU needs from storage.
pub trait PartitionStore: Send + Sync + 'static {
    /// Appends a checked record set to a partition's log.
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode>;
    /// Makes the partition's appends durable (read-committed produce).
    fn sync(&self, topic: &str, partition: u32) -> io::Result<()>;
    /// Reads whole batches from `offset`; returns them with the high
    /// watermark and log start offset.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
    ) -> io::Result<ReadResult>;
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
        let mut log = lock(&handle);
        log.append(records).map_err(|err| {
            if let AppendError::Io(io) = &err {
                tracing::error!(topic, partition, %io, "append failed");
            }
            error_code(&err)
        })
    }

    fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
        match self.existing(topic, partition) {
            Some(handle) => {
                let mut log = lock(&handle);
                if log.syncs_on_commit() {
                    log.sync()
                } else {
                    Ok(())
                }
            }
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
        let log = lock(&handle);
        Ok(ReadResult {
            records: log.read(offset, max_bytes)?,
            high_watermark: log.leo(),
            log_start: log.start_offset(),
            size: log.size(),
        })
    }
}

impl<S: PartitionStore + ?Sized> PartitionStore for Arc<S> {
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode> {
        (**self).append(topic, partition, records)
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
}
