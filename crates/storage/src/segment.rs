//! One segment: a log file of batches and its sparse offset index.
//!
//! Files are named by the segment's base offset: `00000000000000000042.log`
//! and `00000000000000000042.index`. An index entry is 8 bytes, a u32 offset
//! relative to the base and the u32 file position of the batch that starts
//! there; one is written every `index_interval_bytes` of log, so finding an
//! offset is a binary search and a short scan.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BATCH_PREAMBLE, BatchInfo, Batches};

/// A segment, sealed or active.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: i64,
    /// The offset after the last record in the segment.
    pub(crate) next: i64,
    pub(crate) size: u64,
    /// Shared so that a group commit can sync them without the log's lock.
    log: Arc<File>,
    index_file: Arc<File>,
    /// (offset relative to base, file position), ascending.
    index: Vec<(u32, u32)>,
    bytes_since_index: u64,
    log_path: PathBuf,
}

/// The active segment's log file, held apart from the log so that a commit
/// can sync it while appends go on.
///
/// Only the log file: the active segment's index is rebuilt from its log
/// whenever the partition is opened, so its records are durable once the
/// log is; sealed segments' indexes were synced when they were rolled.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFiles {
    log: Arc<File>,
}

impl SegmentFiles {
    /// Makes every record written to the log file so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.log.sync_data()
    }

    /// The log file's length now (appends may have grown it since).
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.log.metadata()?.len())
    }

    /// Writes the bytes in `from..to` of the log file to the device and
    /// waits for them, without a cache flush: the data is not durable
    /// until [`sync`](Self::sync). Only where Linux's `sync_file_range`
    /// exists; elsewhere a no-op, and the sync writes everything.
    pub(crate) fn write_out(&self, from: u64, to: u64) -> io::Result<()> {
        write_out(&self.log, from, to)
    }
}

#[cfg(target_os = "linux")]
fn write_out(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range beyond a file offset",
        ));
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: `file` is borrowed for the call, so its descriptor is open;
    // sync_file_range reads no memory of ours, and a bad range is refused
    // with EINVAL, which is returned as an error (see the tests).
    #[allow(unsafe_code)]
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn write_out(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    Ok(())
}

/// What scanning a segment's log found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes of valid, contiguous batches from the start.
    pub(crate) valid_len: u64,
    /// The offset after the last valid batch.
    pub(crate) next: i64,
    /// Why scanning stopped early, if it did.
    pub(crate) stopped: Option<String>,
}

pub(crate) fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

impl Segment {
    /// Creates an empty segment.
    pub(crate) fn create(dir: &Path, base: i64) -> io::Result<Self> {
        let log_path = log_path(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&log_path)?;
        let index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(index_path(dir, base))?;
        Ok(Self {
            base,
            next: base,
            size: 0,
            log: Arc::new(log),
            index_file: Arc::new(index_file),
            index: Vec::new(),
            bytes_since_index: 0,
            log_path,
        })
    }

    /// Opens an existing segment. With `scan`, every batch is read and
    /// checked, a torn or corrupt tail is cut off and the index rebuilt;
    /// otherwise the index file is trusted if it is well formed, and `next`
    /// must be set by the caller.
    pub(crate) fn open(
        dir: &Path,
        base: i64,
        scan: bool,
        index_interval: u64,
    ) -> io::Result<(Self, Option<Scan>)> {
        let log_path = log_path(dir, base);
        let log = OpenOptions::new().read(true).append(true).open(&log_path)?;
        let index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(index_path(dir, base))?;
        let size = log.metadata()?.len();
        let mut segment = Self {
            base,
            next: base,
            size,
            log: Arc::new(log),
            index_file: Arc::new(index_file),
            index: Vec::new(),
            bytes_since_index: 0,
            log_path,
        };
        if scan {
            let report = segment.scan_and_repair(index_interval)?;
            return Ok((segment, Some(report)));
        }
        if !segment.load_index()? {
            // A missing or damaged index is rebuilt from the log.
            let report = segment.scan_and_repair(index_interval)?;
            return Ok((segment, Some(report)));
        }
        Ok((segment, None))
    }

    fn load_index(&mut self) -> io::Result<bool> {
        let len = self.index_file.metadata()?.len();
        if len % 8 != 0 || len > self.size {
            return Ok(false);
        }
        let mut raw = vec![0u8; len as usize];
        self.index_file.read_exact_at(&mut raw, 0)?;
        let mut index = Vec::with_capacity(raw.len() / 8);
        for entry in raw.chunks_exact(8) {
            let rel = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let pos = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            let ordered = index.last().is_none_or(|&(r, p)| rel > r && pos > p);
            if !ordered || u64::from(pos) >= self.size {
                return Ok(false);
            }
            index.push((rel, pos));
        }
        if self.size > 0 && index.first() != Some(&(0, 0)) {
            return Ok(false);
        }
        self.index = index;
        Ok(true)
    }

    /// Reads the whole log, keeps the longest valid prefix of contiguous
    /// batches, truncates the rest, and rewrites the index.
    fn scan_and_repair(&mut self, index_interval: u64) -> io::Result<Scan> {
        let mut raw = vec![0u8; self.size as usize];
        self.log.read_exact_at(&mut raw, 0)?;
        let mut next = self.base;
        let mut valid_len = 0usize;
        let mut stopped = None;
        self.index.clear();
        self.bytes_since_index = 0;
        for batch in Batches::new(&raw) {
            match batch {
                Ok(info) if info.base_offset == next && info.records > 0 => {
                    self.note_batch(&info, next, valid_len as u64, index_interval);
                    next += info.records;
                    valid_len += info.len;
                }
                Ok(info) => {
                    stopped = Some(format!(
                        "batch at byte {} has base offset {} and {} records where offset {next} was expected",
                        info.start, info.base_offset, info.records
                    ));
                    break;
                }
                Err(err) => {
                    stopped = Some(err.to_string());
                    break;
                }
            }
        }
        if valid_len as u64 != self.size {
            self.log.set_len(valid_len as u64)?;
            self.log.sync_all()?;
            self.size = valid_len as u64;
        }
        self.next = next;
        self.rewrite_index()?;
        Ok(Scan {
            valid_len: valid_len as u64,
            next,
            stopped,
        })
    }

    fn note_batch(&mut self, info: &BatchInfo, base_offset: i64, pos: u64, interval: u64) {
        if self.index.is_empty() || self.bytes_since_index >= interval {
            let rel = u32::try_from(base_offset - self.base).unwrap_or(u32::MAX);
            self.index.push((rel, pos as u32));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += info.len as u64;
    }

    fn rewrite_index(&mut self) -> io::Result<()> {
        let mut raw = Vec::with_capacity(self.index.len() * 8);
        for (rel, pos) in &self.index {
            raw.extend_from_slice(&rel.to_be_bytes());
            raw.extend_from_slice(&pos.to_be_bytes());
        }
        self.index_file.set_len(0)?;
        self.index_file.write_all_at(&raw, 0)?;
        self.index_file.sync_data()
    }

    /// Appends checked batches, rewriting each one's base offset.
    /// `batches` are (info, bytes) pairs; returns the bytes written.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        batches: &[BatchInfo],
        index_interval: u64,
    ) -> io::Result<u64> {
        // Each batch goes out as its new base offset, then its bytes after
        // the original base offset: the records themselves are not copied.
        let mut offsets: Vec<[u8; 8]> = Vec::with_capacity(batches.len());
        let mut next = self.next;
        for info in batches {
            offsets.push(next.to_be_bytes());
            next += info.records;
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for (info, offset) in batches.iter().zip(&offsets) {
            slices.push(IoSlice::new(offset));
            slices.push(IoSlice::new(
                &records[info.start + 8..info.start + info.len],
            ));
        }
        let total: u64 = batches.iter().map(|b| b.len as u64).sum();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let written = (&*self.log).write_vectored(rest)?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        let mut pos = self.size;
        let mut base = self.next;
        let mut new_entries = Vec::new();
        for info in batches {
            let before = self.index.len();
            self.note_batch(info, base, pos, index_interval);
            if self.index.len() > before {
                new_entries.extend_from_slice(&self.index[before..]);
            }
            pos += info.len as u64;
            base += info.records;
        }
        if !new_entries.is_empty() {
            let mut raw = Vec::with_capacity(new_entries.len() * 8);
            for (rel, p) in new_entries {
                raw.extend_from_slice(&rel.to_be_bytes());
                raw.extend_from_slice(&p.to_be_bytes());
            }
            let at = self.index_file.metadata()?.len();
            self.index_file.write_all_at(&raw, at)?;
        }
        self.size += total;
        self.next = next;
        Ok(total)
    }

    /// The segment's files, to sync without holding the log.
    pub(crate) fn files(&self) -> SegmentFiles {
        SegmentFiles {
            log: Arc::clone(&self.log),
        }
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.log.sync_data()?;
        self.index_file.sync_data()
    }

    /// The file position of the batch holding `offset`, if the segment has it.
    pub(crate) fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset < self.base || offset >= self.next {
            return Ok(None);
        }
        let rel = (offset - self.base) as u32;
        let start = match self.index.partition_point(|&(r, _)| r <= rel) {
            0 => 0,
            i => u64::from(self.index[i - 1].1),
        };
        let mut pos = start;
        let mut header = [0u8; 27];
        while pos < self.size {
            self.log.read_exact_at(&mut header, pos)?;
            let base = i64::from_be_bytes(header[..8].try_into().unwrap_or([0; 8]));
            let batch_len = i32::from_be_bytes(header[8..12].try_into().unwrap_or([0; 4]));
            let delta = i32::from_be_bytes(header[23..27].try_into().unwrap_or([0; 4]));
            if base + i64::from(delta) >= offset {
                return Ok(Some(pos));
            }
            pos += BATCH_PREAMBLE as u64 + u64::try_from(batch_len).unwrap_or(0);
        }
        Ok(None)
    }

    /// Reads whole batches from `pos`, at most `max` bytes but at least one
    /// batch.
    pub(crate) fn read_from(&self, pos: u64, max: u64, out: &mut Vec<u8>) -> io::Result<()> {
        let mut at = pos;
        let mut header = [0u8; BATCH_PREAMBLE];
        while at < self.size {
            self.log.read_exact_at(&mut header, at)?;
            let batch_len = i32::from_be_bytes(header[8..12].try_into().unwrap_or([0; 4]));
            let len = BATCH_PREAMBLE as u64 + u64::try_from(batch_len).unwrap_or(0);
            if !out.is_empty() && (out.len() as u64) + len > max {
                break;
            }
            let start = out.len();
            out.resize(start + len as usize, 0);
            self.log.read_exact_at(&mut out[start..], at)?;
            at += len;
            if out.len() as u64 >= max {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.log_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_with(bytes: &[u8]) -> (tempfile::TempDir, SegmentFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        std::fs::write(&path, bytes).expect("write");
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        (dir, SegmentFiles { log: Arc::new(log) })
    }

    #[test]
    fn write_out_takes_any_range_of_the_file_and_a_sync_follows() {
        let (_dir, files) = files_with(&[7u8; 300 << 10]);
        assert_eq!(files.len().unwrap(), 300 << 10);
        files.write_out(0, 128 << 10).unwrap();
        files.write_out(128 << 10, 300 << 10).unwrap();
        // Past the end and empty ranges are no error either.
        files.write_out(300 << 10, 400 << 10).unwrap();
        files.write_out(5, 5).unwrap();
        files.sync().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_out_refuses_a_range_no_file_offset_can_hold() {
        let (_dir, files) = files_with(b"x");
        let err = files.write_out(u64::MAX - 1, u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_out_reports_what_the_kernel_refuses() {
        // A pipe is no file: sync_file_range says ESPIPE, returned as an error.
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let fd = std::os::fd::OwnedFd::from(reader);
        let files = SegmentFiles {
            log: Arc::new(File::from(fd)),
        };
        let err = files.write_out(0, 10).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESPIPE));
    }
}
