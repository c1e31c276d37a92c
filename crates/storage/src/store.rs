//! The partitions of one SPU, each in `<data dir>/<topic>-<partition>/`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::log::{LogConfig, PartitionLog};

/// A partition's log, shared by the connections that write and read it.
pub type PartitionHandle = Arc<Mutex<PartitionLog>>;

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

/// The partition logs of one SPU, opened on first use.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: LogConfig,
    partitions: Mutex<HashMap<(String, u32), PartitionHandle>>,
}

/// Locks a partition, even if a previous holder panicked: the log's state
/// is updated only after each write succeeds, so it is whole.
pub fn lock(handle: &PartitionHandle) -> MutexGuard<'_, PartitionLog> {
    handle.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Store {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, config: LogConfig) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            config,
            partitions: Mutex::new(HashMap::new()),
        })
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

    /// The partition's log, opened (and recovered) on first use.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<PartitionHandle, StoreError> {
        let mut partitions = self
            .partitions
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(handle) = partitions.get(&(topic.to_string(), partition)) {
            return Ok(handle.clone());
        }
        let path = self.partition_dir(topic, partition)?;
        let (log, _) = PartitionLog::open(&path, self.config)
            .map_err(|source| StoreError::Open { path, source })?;
        let handle = Arc::new(Mutex::new(log));
        partitions.insert((topic.to_string(), partition), handle.clone());
        Ok(handle)
    }

    /// The partition's log if it was opened already.
    pub fn existing(&self, topic: &str, partition: u32) -> Option<PartitionHandle> {
        self.partitions
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&(topic.to_string(), partition))
            .cloned()
    }
}
