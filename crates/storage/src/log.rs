//! A partition's log: an ordered run of segments, the last one active.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::batch::{BatchError, BatchInfo, Batches};
use crate::scheduler::{CHUNK_BYTES, Flush, SyncScheduler};
use crate::segment::Segment;

/// When appended data is forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every append.
    Always,
    /// When a producer asks for read-committed (acks = -1) before it is
    /// answered; otherwise left to the OS.
    #[default]
    OnCommit,
    /// Never explicitly (tests and benchmarks that measure other things).
    Never,
}

/// Tunables of a partition log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled once it would grow past this many bytes. A single
    /// batch larger than this is refused as too large.
    pub segment_bytes: u64,
    /// Bytes of log between two offset-index entries.
    pub index_interval_bytes: u64,
    /// The most bytes the partition may hold; past it appends are refused.
    pub max_partition_bytes: Option<u64>,
    /// When data is made durable.
    pub fsync: FsyncPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            index_interval_bytes: 4096,
            max_partition_bytes: None,
            fsync: FsyncPolicy::OnCommit,
        }
    }
}

/// Why an append was refused. Nothing is written when it is.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A batch is malformed or fails its CRC.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A batch is larger than a segment.
    #[error("batch of {size} bytes exceeds the segment size of {limit} bytes")]
    TooLarge {
        /// The batch size.
        size: u64,
        /// The segment size.
        limit: u64,
    },
    /// The partition reached its size limit.
    #[error("partition holds {used} bytes, limit {limit}")]
    PartitionFull {
        /// Bytes held.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// A mirrored record set does not continue this log exactly: its
    /// first batch does not start at the log end, or its batches are not
    /// contiguous. Mirrored records keep the sender's offsets, so they can
    /// only be appended where they belong.
    #[error("misaligned batch: expected base offset {expected}, found {found}")]
    Misaligned {
        /// The offset the next batch had to start at.
        expected: i64,
        /// The base offset it carried.
        found: i64,
    },
    /// A mirrored append from a link admitted at an epoch older than the
    /// log's fence: the partition was promoted, failed over or paused since.
    #[error("fenced: the link's mirror epoch {epoch} is older than the partition's {fence}")]
    Fenced {
        /// The link's epoch.
        epoch: u32,
        /// The partition's fence.
        fence: u32,
    },
    /// The disk refused the write.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record written (the log end before the append).
    pub base_offset: i64,
    /// Records written.
    pub records: i64,
    /// Bytes written.
    pub bytes: u64,
}

/// What opening a log found and repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// The log end offset after recovery.
    pub leo: i64,
    /// Bytes cut from a torn or corrupt tail, and why.
    pub truncated: Option<(u64, String)>,
}

/// One partition's log.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Keyed by base offset; the last is the active segment.
    segments: BTreeMap<i64, Segment>,
    bytes: u64,
    /// Bytes appended since the log was opened: a position in the stream of
    /// appends, which commits are measured against.
    written: u64,
    /// How much of `written` is known durable.
    durable: u64,
    /// The mirror epoch this log is fenced at: mirrored appends of an older
    /// epoch are refused. In memory only: after a restart the SPU admits no
    /// mirror link before the SC told it the partition's current epoch.
    mirror_fence: u32,
}

/// What a commit must sync to make the log durable up to [`upto`](Self::upto):
/// the active segment's files, shared so the sync runs without the log's lock.
#[derive(Debug)]
pub struct CommitPoint {
    files: crate::segment::SegmentFiles,
    /// Where in the active segment's file the unsynced bytes begin.
    unsynced_from: u64,
    /// The append position this sync makes durable.
    pub upto: u64,
}

impl CommitPoint {
    /// Syncs the files; then [`PartitionLog::committed`] records it.
    pub fn sync(&self) -> io::Result<()> {
        self.files.sync()
    }

    /// Syncs the files in the store's order ([`crate::scheduler`]): a big
    /// unsynced range goes to the device `chunk` bytes per turn, appends
    /// that land meanwhile included, before the closing flush.
    pub(crate) fn sync_in_turn(&self, scheduler: &SyncScheduler, chunk: u64) -> io::Result<()> {
        let mut at = self.unsynced_from;
        let mut kind = Flush::Small;
        // The second pass takes what was appended during the first, so the
        // closing flush carries little; no third, or a busy partition's
        // commit could chase its own appends forever.
        for _ in 0..2 {
            let len = self.files.len()?;
            while len.saturating_sub(at) > CHUNK_BYTES {
                let end = at.saturating_add(chunk).min(len);
                let _turn = scheduler.chunk();
                kind = Flush::AfterChunks;
                self.files.write_out(at, end)?;
                at = end;
            }
        }
        let _turn = scheduler.flush(kind);
        self.sync()
    }
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash: the
    /// active segment is scanned and a torn tail cut off.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> io::Result<(Self, Recovery)> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<i64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut truncated = None;
        if bases.is_empty() {
            segments.insert(0, Segment::create(&dir, 0)?);
            sync_dir(&dir)?;
        }
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let (mut segment, scan) = Segment::open(&dir, base, last, config.index_interval_bytes)?;
            if !last {
                segment.next = bases[i + 1];
            }
            if let Some(scan) = scan {
                if let Some(reason) = scan.stopped {
                    warn!(segment = %segment.path().display(), valid_bytes = scan.valid_len, %reason, "cut torn tail");
                    truncated = Some((scan.valid_len, reason));
                }
                if !last && scan.next != bases[i + 1] {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "sealed segment {} ends at offset {} but the next segment starts at {}",
                            segment.path().display(),
                            scan.next,
                            bases[i + 1]
                        ),
                    ));
                }
            }
            segments.insert(base, segment);
        }
        let bytes = segments.values().map(|s| s.size).sum();
        let log = Self {
            dir,
            config,
            segments,
            bytes,
            written: 0,
            durable: 0,
            mirror_fence: 0,
        };
        let recovery = Recovery {
            segments: log.segments.len(),
            leo: log.leo(),
            truncated,
        };
        info!(dir = %log.dir.display(), leo = recovery.leo, segments = recovery.segments, "opened partition log");
        Ok((log, recovery))
    }

    /// The log end offset: the offset the next record will get.
    pub fn leo(&self) -> i64 {
        self.active().next
    }

    /// The first offset still held.
    pub fn start_offset(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    /// Bytes held across all segments.
    pub fn size(&self) -> u64 {
        self.bytes
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Checks every batch of `records`, then appends them at the log end,
    /// rewriting their base offsets. All or nothing: on error nothing is
    /// written. Under [`FsyncPolicy::Always`] the append is synced before
    /// this returns.
    pub fn append(&mut self, records: &[u8]) -> Result<Appended, AppendError> {
        let appended = self.append_unsynced(records)?;
        if self.config.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(appended)
    }

    /// [`append`](Self::append) without the sync that
    /// [`FsyncPolicy::Always`] asks for: the caller commits before it
    /// acknowledges (a group commit, outside this log's lock).
    pub fn append_unsynced(&mut self, records: &[u8]) -> Result<Appended, AppendError> {
        self.append_checked(records, false)
    }

    /// Appends mirrored batches, keeping the sender's offsets: the first
    /// batch must start at this log's end and each next one where the one
    /// before it ended ([`AppendError::Misaligned`] otherwise, nothing
    /// written). The bytes are stored exactly as they came. Not synced,
    /// like [`append_unsynced`](Self::append_unsynced): a receiver that
    /// loses an unsynced tail announces its shorter log end, and the sender
    /// sends it again.
    ///
    /// `epoch` is the mirror epoch the link was admitted at: older than the
    /// log's fence ([`fence_mirror`](Self::fence_mirror)), the append is
    /// refused as [`AppendError::Fenced`] and nothing is written.
    pub fn append_mirrored(&mut self, records: &[u8], epoch: u32) -> Result<Appended, AppendError> {
        if epoch < self.mirror_fence {
            return Err(AppendError::Fenced {
                epoch,
                fence: self.mirror_fence,
            });
        }
        self.append_checked(records, true)
    }

    /// Raises the mirror fence to `epoch` (never lowers it): from the return
    /// of this call, no mirrored append of an older epoch is written. The
    /// fence and the appends take the same lock, so an append either came
    /// before the fence or is refused by it.
    pub fn fence_mirror(&mut self, epoch: u32) {
        self.mirror_fence = self.mirror_fence.max(epoch);
    }

    /// The mirror epoch this log is fenced at.
    pub fn mirror_fence(&self) -> u32 {
        self.mirror_fence
    }

    fn append_checked(&mut self, records: &[u8], aligned: bool) -> Result<Appended, AppendError> {
        let mut batches: Vec<BatchInfo> = Vec::new();
        let mut expected = self.leo();
        for batch in Batches::new(records) {
            let batch = batch?;
            if aligned {
                if batch.base_offset != expected {
                    return Err(AppendError::Misaligned {
                        expected,
                        found: batch.base_offset,
                    });
                }
                expected += batch.records;
            }
            if batch.len as u64 > self.config.segment_bytes {
                return Err(AppendError::TooLarge {
                    size: batch.len as u64,
                    limit: self.config.segment_bytes,
                });
            }
            if batch.records > 0 {
                batches.push(batch);
            }
        }
        let base_offset = self.leo();
        if batches.is_empty() {
            return Ok(Appended {
                base_offset,
                records: 0,
                bytes: 0,
            });
        }
        let incoming: u64 = batches.iter().map(|b| b.len as u64).sum();
        if let Some(limit) = self.config.max_partition_bytes
            && self.bytes + incoming > limit
        {
            return Err(AppendError::PartitionFull {
                used: self.bytes,
                limit,
            });
        }
        let active_size = self.active().size;
        if active_size > 0 && active_size + incoming > self.config.segment_bytes {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        let segment = self
            .segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment");
        let bytes = segment.append(records, &batches, interval)?;
        let records_written = segment.next - base_offset;
        self.bytes += bytes;
        self.written += bytes;
        Ok(Appended {
            base_offset,
            records: records_written,
            bytes,
        })
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let base = self.leo();
        let segment = Segment::create(&self.dir, base)?;
        sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), base, "rolled segment");
        self.segments.insert(base, segment);
        Ok(())
    }

    /// Makes every append so far durable, holding the log meanwhile.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.durable < self.written {
            self.active().sync()?;
            self.durable = self.written;
        }
        Ok(())
    }

    /// The append position reached so far (bytes appended since open).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The append position known durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// What to sync, outside the log's lock, to make every append so far
    /// durable; `None` if it is already. Segments before the active one
    /// were synced when they were rolled, so the active one is all it takes.
    pub fn commit_point(&self) -> Option<CommitPoint> {
        (self.durable < self.written).then(|| {
            let active = self.active();
            CommitPoint {
                files: active.files(),
                // A roll syncs the segment it closes, so the unsynced bytes
                // are all at the end of the active one.
                unsynced_from: active.size.saturating_sub(self.written - self.durable),
                upto: self.written,
            }
        })
    }

    /// Records that a [`CommitPoint`] was synced.
    pub fn committed(&mut self, upto: u64) {
        self.durable = self.durable.max(upto);
    }

    /// The policy the log was opened with.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.config.fsync
    }

    /// Whether acks = -1 requests must sync before they are answered.
    pub fn syncs_on_commit(&self) -> bool {
        self.config.fsync != FsyncPolicy::Never
    }

    /// Reads whole batches starting with the one holding `offset`: at most
    /// `max_bytes`, but always at least one batch if any is there. Empty at
    /// the log end.
    pub fn read(&self, offset: i64, max_bytes: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let Some((_, first)) = self.segments.range(..=offset).next_back() else {
            return Ok(out);
        };
        let Some(pos) = first.position_of(offset)? else {
            return Ok(out);
        };
        first.read_from(pos, max_bytes, &mut out)?;
        for (_, segment) in self.segments.range(offset + 1..) {
            if out.len() as u64 >= max_bytes {
                break;
            }
            let before = out.len();
            segment.read_from(0, max_bytes - before as u64, &mut out)?;
            if out.len() == before {
                break;
            }
        }
        Ok(out)
    }
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
