//! Checks on record batches before they are written.
//!
//! A record set is batches placed back to back (Kafka RecordBatch v2 with
//! Fluvio's extensions). Storage never decodes records; it reads the batch
//! header to learn the batch's size and record count, and verifies the
//! CRC-32C over `[21, 12 + batch_len)`, so that it never accepts a batch it
//! could not serve back intact.
//!
//! ```text
//! 0  base_offset i64     (rewritten by the log on append)
//! 8  batch_len   i32     (bytes after this field; batch = 12 + batch_len)
//! 12 leader_epoch i32
//! 16 magic        i8     (2)
//! 17 crc          u32    (CRC-32C of bytes 21..12+batch_len)
//! 21 attributes   i16    (bit 0x10: a 4-byte schema id follows the header)
//! 23 last_offset_delta i32 (record count - 1)
//! ...                    header ends at 57 (61 with a schema id)
//! ```

/// Bytes before `batch_len` ends: base_offset + batch_len.
pub const BATCH_PREAMBLE: usize = 12;
/// Minimum `batch_len`: the header after the preamble.
pub const MIN_BATCH_LEN: usize = 45;
const SCHEMA_ID_FLAG: i16 = 0x10;

/// Why a batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch preamble remain.
    #[error(
        "truncated batch at byte {at}: {available} bytes left, a batch needs at least {BATCH_PREAMBLE}"
    )]
    Truncated {
        /// Offset of the batch in the record set.
        at: usize,
        /// Bytes left.
        available: usize,
    },
    /// `batch_len` is below the header size or runs past the record set.
    #[error("batch at byte {at} declares length {batch_len}, outside 45..={max}")]
    BadLength {
        /// Offset of the batch in the record set.
        at: usize,
        /// The declared length.
        batch_len: i32,
        /// The most the record set allows.
        max: usize,
    },
    /// The magic byte is not 2.
    #[error("batch at byte {at} has magic {magic}, expected 2")]
    BadMagic {
        /// Offset of the batch in the record set.
        at: usize,
        /// The magic found.
        magic: i8,
    },
    /// The CRC does not match the content.
    #[error(
        "batch at byte {at} fails its CRC-32C: stored {stored:#010x}, computed {computed:#010x}"
    )]
    BadCrc {
        /// Offset of the batch in the record set.
        at: usize,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the content.
        computed: u32,
    },
    /// `last_offset_delta` is below -1.
    #[error("batch at byte {at} has last_offset_delta {delta}")]
    BadOffsetDelta {
        /// Offset of the batch in the record set.
        at: usize,
        /// The value found.
        delta: i32,
    },
}

/// One checked batch of a record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// Where the batch starts in the record set.
    pub start: usize,
    /// Its total size, preamble included.
    pub len: usize,
    /// Its base offset as stored.
    pub base_offset: i64,
    /// How many records it holds (`last_offset_delta + 1`, 0 for an empty batch).
    pub records: i64,
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks the batch at the start of `bytes` (`at` is only for messages).
pub fn check_batch(bytes: &[u8], at: usize) -> Result<BatchInfo, BatchError> {
    if bytes.len() < BATCH_PREAMBLE {
        return Err(BatchError::Truncated {
            at,
            available: bytes.len(),
        });
    }
    let base_offset = i64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let batch_len = i32_at(bytes, 8);
    let max = bytes.len() - BATCH_PREAMBLE;
    let bad_length = BatchError::BadLength { at, batch_len, max };
    let len = usize::try_from(batch_len).map_err(|_| bad_length)?;
    if !(MIN_BATCH_LEN..=max).contains(&len) {
        return Err(bad_length);
    }
    let batch = &bytes[..BATCH_PREAMBLE + len];
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic { at, magic });
    }
    let attributes = i16::from_be_bytes([batch[21], batch[22]]);
    if attributes & SCHEMA_ID_FLAG != 0 && len < MIN_BATCH_LEN + 4 {
        return Err(bad_length);
    }
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    let computed = crc32c::crc32c(&batch[21..]);
    if stored != computed {
        return Err(BatchError::BadCrc {
            at,
            stored,
            computed,
        });
    }
    let delta = i32_at(batch, 23);
    if delta < -1 {
        return Err(BatchError::BadOffsetDelta { at, delta });
    }
    Ok(BatchInfo {
        start: at,
        len: batch.len(),
        base_offset,
        records: i64::from(delta) + 1,
    })
}

/// Iterator over the checked batches of a record set; stops at the first
/// error, which it yields.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Batches of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            failed: false,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<BatchInfo, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let result = check_batch(&self.bytes[self.at..], self.at);
        match &result {
            Ok(info) => self.at += info.len,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}
