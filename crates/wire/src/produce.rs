//! A validated, zero-copy view of a ProduceRequest (api key 0).
//!
//! ```text
//! transactional_id  u8 tag [+ i16 len + bytes]    (every version, despite its attribute)
//! acks              i16                           (< 0 means read committed)
//! timeout_ms        i32                           (negative is an error)
//! topics            i32 count, then per topic:
//!   name              i16 len + UTF-8
//!   partitions        i32 count, then per entry:
//!     partition_index   u32
//!     records           i32 len L, then L bytes of batches (never parsed here)
//! smartmodules      i32 count + invocations       (see `smartmodule`)
//! ```
//!
//! [`ProduceRequest::parse_body`] walks the body once and checks every length,
//! count, string and tag, and that nothing trails the body. Only then does it
//! hand out a view. Iterating the view re-reads the same immutable bytes along
//! the same path, so it cannot fail; it allocates nothing and never looks
//! inside a record set.

use bytes::Bytes;

use crate::error::{Field, WireError};
use crate::header::RequestHeader;
use crate::reader::Reader;
use crate::smartmodule;

/// The api key of Produce.
pub const PRODUCE_API_KEY: u16 = 0;
/// The highest Produce api_version this crate reads (Fluvio 0.50's `COMMON_VERSION`).
pub const PRODUCE_MAX_VERSION: i16 = 25;
/// The lowest Produce api_version this crate reads.
pub const PRODUCE_MIN_VERSION: i16 = 0;

/// How long a producer wants to wait for its write, from the `acks` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `acks >= 0`: answer once the leader has appended.
    ReadUncommitted,
    /// `acks < 0`: answer once the write is committed (durable).
    ReadCommitted,
}

/// A ProduceRequest body, validated, borrowing its frame.
#[derive(Clone, Debug)]
pub struct ProduceRequest<'a> {
    frame: &'a Bytes,
    api_version: i16,
    transactional_id: Option<&'a str>,
    acks: i16,
    timeout_ms: i32,
    topic_count: usize,
    entry_count: usize,
    topics_start: usize,
    smartmodule_count: usize,
}

impl<'a> ProduceRequest<'a> {
    /// Parses a whole frame (the bytes after the size prefix): the header,
    /// which must carry the Produce api key, then the body.
    pub fn parse(frame: &'a Bytes) -> Result<(RequestHeader<'a>, Self), WireError> {
        let (header, body_start) = RequestHeader::parse(frame)?;
        let request = Self::parse_body(frame, &header, body_start)?;
        Ok((header, request))
    }

    /// Parses the body that starts at `body_start` in `frame`, at the
    /// header's api_version.
    pub fn parse_body(
        frame: &'a Bytes,
        header: &RequestHeader<'_>,
        body_start: usize,
    ) -> Result<Self, WireError> {
        if header.api_key != PRODUCE_API_KEY {
            return Err(WireError::UnexpectedApiKey {
                expected: PRODUCE_API_KEY,
                found: header.api_key,
            });
        }
        let api_version = header.api_version;
        if !(PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION).contains(&api_version) {
            return Err(WireError::UnsupportedVersion {
                api_key: PRODUCE_API_KEY,
                version: api_version,
            });
        }

        let mut r = Reader::new(frame, body_start);
        let transactional_id = match r.flag(Field::TransactionalId)? {
            true => Some(r.str(Field::TransactionalId)?),
            false => None,
        };
        let acks = r.i16(Field::Acks)?;
        let timeout_ms = r.i32(Field::Timeout)?;
        if timeout_ms < 0 {
            return Err(WireError::NegativeTimeout(timeout_ms));
        }

        let topic_count = r.len_i32(Field::TopicCount)?;
        let topics_start = r.pos();
        let mut entry_count = 0usize;
        for _ in 0..topic_count {
            r.str(Field::TopicName)?;
            let partitions = r.len_i32(Field::PartitionCount)?;
            for _ in 0..partitions {
                let (_, len) = r.entry_header()?;
                r.skip(len, Field::Records)?;
            }
            entry_count += partitions;
        }

        let smartmodule_count = smartmodule::skip_invocations(&mut r, api_version)?;
        if r.remaining() > 0 {
            return Err(WireError::TrailingBytes {
                count: r.remaining(),
            });
        }

        Ok(Self {
            frame,
            api_version,
            transactional_id,
            acks,
            timeout_ms,
            topic_count,
            entry_count,
            topics_start,
            smartmodule_count,
        })
    }

    /// The api_version the body was encoded at; the response uses it too.
    #[inline]
    pub fn api_version(&self) -> i16 {
        self.api_version
    }

    /// The transactional id (the official client always sends none).
    pub fn transactional_id(&self) -> Option<&'a str> {
        self.transactional_id
    }

    /// The raw `acks` field.
    pub fn acks(&self) -> i16 {
        self.acks
    }

    /// The isolation the `acks` field asks for.
    pub fn isolation(&self) -> Isolation {
        if self.acks < 0 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }

    /// The timeout in milliseconds; never negative.
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }

    /// How many topics the request lists.
    #[inline]
    pub fn topic_count(&self) -> usize {
        self.topic_count
    }

    /// How many partition entries the request holds across all topics,
    /// duplicates included.
    #[inline]
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// How many smartmodule invocations the request carries.
    pub fn smartmodule_count(&self) -> usize {
        self.smartmodule_count
    }

    /// The frame this view borrows.
    pub fn frame(&self) -> &'a Bytes {
        self.frame
    }

    /// The topics, in request order.
    #[inline]
    pub fn topics(&self) -> Topics<'a> {
        Topics {
            frame: self.frame,
            r: Reader::new(self.frame, self.topics_start),
            left: self.topic_count,
            skip: None,
        }
    }
}

/// Iterator over the topics of a [`ProduceRequest`].
#[derive(Clone, Debug)]
pub struct Topics<'a> {
    frame: &'a Bytes,
    r: Reader<'a>,
    left: usize,
    /// The entries of the topic handed out last, skipped only if another
    /// topic follows: a request with one topic is walked once.
    skip: Option<usize>,
}

impl<'a> Iterator for Topics<'a> {
    type Item = Topic<'a>;

    #[inline]
    fn next(&mut self) -> Option<Topic<'a>> {
        if self.left == 0 {
            return None;
        }
        if let Some(entries) = self.skip.take() {
            for _ in 0..entries {
                let (_, len) = self.r.entry_header().ok()?;
                self.r.skip(len, Field::Records).ok()?;
            }
        }
        self.left -= 1;
        // The body was validated by `parse_body`, so these reads succeed.
        let name = self.r.str_validated(Field::TopicName).ok()?;
        let partition_count = self.r.len_i32(Field::PartitionCount).ok()?;
        self.skip = Some(partition_count);
        Some(Topic {
            name,
            partition_count,
            entries: Entries {
                frame: self.frame,
                r: self.r.clone(),
                left: partition_count,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Topics<'_> {}

/// One topic of a ProduceRequest.
#[derive(Clone, Debug)]
pub struct Topic<'a> {
    name: &'a str,
    partition_count: usize,
    entries: Entries<'a>,
}

impl<'a> Topic<'a> {
    /// The topic name.
    #[inline]
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// How many partition entries follow, duplicates included.
    #[inline]
    pub fn partition_count(&self) -> usize {
        self.partition_count
    }

    /// The partition entries, in request order.
    #[inline]
    pub fn entries(&self) -> Entries<'a> {
        self.entries.clone()
    }
}

/// Iterator over the partition entries of one [`Topic`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    frame: &'a Bytes,
    r: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = PartitionEntry<'a>;

    #[inline]
    fn next(&mut self) -> Option<PartitionEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (partition, len) = self.r.entry_header().ok()?;
        let start = self.r.pos();
        self.r.skip(len, Field::Records).ok()?;
        Some(PartitionEntry {
            partition,
            records: Records {
                frame: self.frame,
                start,
                end: start + len,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// One partition entry: an index and its record set.
#[derive(Clone, Debug)]
pub struct PartitionEntry<'a> {
    /// The partition the records are for.
    pub partition: u32,
    /// The record set, still encoded, as it sits in the frame.
    pub records: Records<'a>,
}

/// The encoded batches of one partition entry: a range of the frame.
///
/// The bytes are never parsed or copied here. [`Records::to_bytes`] gives the
/// storage layer an owned handle onto the same memory.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    frame: &'a Bytes,
    start: usize,
    end: usize,
}

impl<'a> Records<'a> {
    /// The batches, borrowed from the frame.
    #[inline]
    pub fn as_slice(&self) -> &'a [u8] {
        // start <= end <= frame.len() was checked by `Reader::skip`.
        &self.frame[self.start..self.end]
    }

    /// The batches as a `Bytes` sharing the frame's memory (no copy).
    #[inline]
    pub fn to_bytes(&self) -> Bytes {
        self.frame.slice(self.start..self.end)
    }

    /// The byte range of the batches within the frame.
    #[inline]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// Length of the record set in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the record set is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}
