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
use crate::reader::{Bail, Fail, Reader, detailed_error};
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
    acks: i16,
    timeout_ms: i32,
    transactional_id: Option<&'a str>,
    topic_count: usize,
    entry_count: usize,
    smartmodule_count: usize,
    /// The first topic's name and entry count, and where its entries start:
    /// kept from the validating walk, so the guard resolves the topic and
    /// iterates its entries without reading its header again. A request
    /// without topics holds an empty head here.
    first: TopicHead<'a>,
}

/// A topic's name and entry count, and the offset of its first entry.
#[derive(Clone, Copy, Debug)]
struct TopicHead<'a> {
    name: &'a str,
    partition_count: usize,
    entries_at: usize,
}

impl<'a> TopicHead<'a> {
    /// Reads a topic's name and entry count at `r`, checking the name's UTF-8.
    #[inline]
    fn read<E: Fail>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        let name = r.str(Field::TopicName)?;
        let partition_count = r.len_i32(Field::PartitionCount)?;
        Ok(Self {
            name,
            partition_count,
            entries_at: r.pos(),
        })
    }

    /// Reads a topic's head and checks its entries (each header, and that
    /// its records fit), leaving `r` after the topic.
    #[inline(always)]
    fn walk<E: Fail>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        let head = Self::read(r)?;
        for _ in 0..head.partition_count {
            let (_, len) = r.entry_header()?;
            r.skip(len, Field::Records)?;
        }
        Ok(head)
    }

    /// Reads a head that the validating walk already read.
    #[inline]
    fn reread(r: &mut Reader<'a, Bail>) -> Option<Self> {
        let name = r.str_validated(Field::TopicName).ok()?;
        let partition_count = r.len_i32(Field::PartitionCount).ok()?;
        Some(Self {
            name,
            partition_count,
            entries_at: r.pos(),
        })
    }
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
    #[inline(always)]
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

        match Self::walk::<Bail>(frame, api_version, body_start) {
            Ok(view) => Ok(view),
            Err(Bail) => Err(Self::explain(frame, api_version, body_start)),
        }
    }

    /// Walks the body again, to say exactly what is wrong with it. (Only the
    /// error comes back, so the success path never waits on this call's
    /// result in memory.)
    #[cold]
    #[inline(never)]
    fn explain(frame: &Bytes, api_version: i16, body_start: usize) -> WireError {
        detailed_error(ProduceRequest::walk::<WireError>(
            frame,
            api_version,
            body_start,
        ))
    }

    /// The validating walk over the whole body.
    #[inline(always)]
    fn walk<E: Fail>(frame: &'a Bytes, api_version: i16, body_start: usize) -> Result<Self, E> {
        let mut r = Reader::<E>::new(frame, body_start);
        let (transactional_id, acks, timeout_ms, topic_count) = Self::fixed_head(&mut r)?;
        if timeout_ms < 0 {
            return Err(E::from_error(|| WireError::NegativeTimeout(timeout_ms)));
        }

        // The first topic is kept for the view; the others are only checked.
        let first = match topic_count {
            0 => TopicHead {
                name: "",
                partition_count: 0,
                entries_at: r.pos(),
            },
            _ => TopicHead::walk(&mut r)?,
        };
        let mut entry_count = first.partition_count;
        for _ in 1..topic_count {
            entry_count += TopicHead::walk(&mut r)?.partition_count;
        }

        let smartmodule_count = smartmodule::skip_invocations(&mut r, api_version)?;
        if r.remaining() > 0 {
            return Err(E::from_error(|| WireError::TrailingBytes {
                count: r.remaining(),
            }));
        }

        Ok(Self {
            frame,
            api_version,
            acks,
            timeout_ms,
            transactional_id,
            topic_count,
            entry_count,
            smartmodule_count,
            first,
        })
    }

    /// transactional_id, acks, timeout_ms and the topic count. Clients send
    /// no transactional id, and then these are 11 fixed bytes, read with one
    /// bounds check.
    #[inline]
    #[allow(clippy::type_complexity)]
    fn fixed_head<E: Fail>(r: &mut Reader<'a, E>) -> Result<(Option<&'a str>, i16, i32, usize), E> {
        if let Some(head) = r.peek::<11>()
            && head[0] == 0
        {
            let acks = i16::from_be_bytes([head[1], head[2]]);
            let timeout_ms = i32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            let topic_count = i32::from_be_bytes([head[7], head[8], head[9], head[10]]);
            r.consume_peeked::<11>();
            let topic_count = usize::try_from(topic_count).map_err(|_| {
                E::from_error(|| WireError::NegativeLength {
                    field: Field::TopicCount,
                    len: topic_count,
                })
            })?;
            return Ok((None, acks, timeout_ms, topic_count));
        }
        let transactional_id = match r.flag(Field::TransactionalId)? {
            true => Some(r.str(Field::TransactionalId)?),
            false => None,
        };
        let acks = r.i16(Field::Acks)?;
        let timeout_ms = r.i32(Field::Timeout)?;
        let topic_count = r.len_i32(Field::TopicCount)?;
        Ok((transactional_id, acks, timeout_ms, topic_count))
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

    /// The first topic's name (the official client sends exactly one topic
    /// per request), without starting an iteration.
    #[inline]
    pub fn first_topic_name(&self) -> Option<&'a str> {
        (self.topic_count > 0).then_some(self.first.name)
    }

    /// The topics, in request order.
    #[inline]
    pub fn topics(&self) -> Topics<'a> {
        Topics {
            frame: self.frame,
            next: self.first,
            left: self.topic_count,
        }
    }
}

/// Iterator over the topics of a [`ProduceRequest`].
///
/// It holds the head of the next topic, already read: the first one comes
/// from the validating walk, and each later one is read when the topic
/// before it is handed out, so a one-topic request is never re-read here.
#[derive(Clone, Debug)]
pub struct Topics<'a> {
    frame: &'a Bytes,
    next: TopicHead<'a>,
    left: usize,
}

impl<'a> Iterator for Topics<'a> {
    type Item = Topic<'a>;

    #[inline]
    fn next(&mut self) -> Option<Topic<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let head = &self.next;
        let topic = Topic {
            name: head.name,
            partition_count: head.partition_count,
            entries: Entries {
                frame: self.frame,
                r: Reader::<Bail>::new(self.frame, head.entries_at),
                left: head.partition_count,
            },
        };
        if self.left > 0 {
            self.next = Self::head_after(self.frame, head)?;
        }
        Some(topic)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a> Topics<'a> {
    /// The head of the topic that follows `head`'s entries. The body was
    /// validated by `parse_body`, so these reads succeed.
    fn head_after(frame: &'a Bytes, head: &TopicHead<'a>) -> Option<TopicHead<'a>> {
        let mut r = Reader::<Bail>::new(frame, head.entries_at);
        for _ in 0..head.partition_count {
            r.validated_entry()?;
        }
        TopicHead::reread(&mut r)
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
    r: Reader<'a, Bail>,
    left: usize,
}

impl Entries<'_> {
    /// An iterator over no entries.
    pub fn empty() -> Self {
        Entries {
            frame: empty_frame(),
            r: Reader::<Bail>::new(&[], 0),
            left: 0,
        }
    }
}

/// A frame with no bytes, for iterators over nothing.
fn empty_frame() -> &'static Bytes {
    static EMPTY: Bytes = Bytes::from_static(&[]);
    &EMPTY
}

impl<'a> Iterator for Entries<'a> {
    type Item = PartitionEntry<'a>;

    #[inline]
    fn next(&mut self) -> Option<PartitionEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (partition, start, len) = self.r.validated_entry()?;
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
