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

/// A topic's name and entry count, and a reader at its first entry.
#[derive(Clone, Copy, Debug)]
struct TopicHead<'a> {
    name: &'a str,
    partition_count: usize,
    /// Positioned at the first entry (the entries were checked before any
    /// view hands this out).
    entries: Reader<'a, Bail>,
}

impl<'a> TopicHead<'a> {
    /// The head of a request without topics.
    fn none(at: Reader<'a, Bail>) -> Self {
        Self {
            name: "",
            partition_count: 0,
            entries: at,
        }
    }

    /// Reads a topic's name and entry count at `r`, checking the name's UTF-8.
    #[inline(always)]
    fn read<E: Fail>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        let name = r.str(Field::TopicName)?;
        let partition_count = r.len_i32(Field::PartitionCount)?;
        Ok(Self {
            name,
            partition_count,
            entries: r.with_fail(),
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
    #[inline(always)]
    fn reread(r: &mut Reader<'a, Bail>) -> Option<Self> {
        let name = r.str_validated(Field::TopicName).ok()?;
        let partition_count = r.len_i32(Field::PartitionCount).ok()?;
        Some(Self {
            name,
            partition_count,
            entries: *r,
        })
    }
}

impl<'a> ProduceRequest<'a> {
    /// Parses a whole frame (the bytes after the size prefix): the header,
    /// which must carry the Produce api key, then the body.
    #[inline(always)]
    pub fn parse(frame: &'a Bytes) -> Result<(RequestHeader<'a>, Self), WireError> {
        let (header, body) = match RequestHeader::read::<Bail>(frame) {
            Ok(read) => read,
            Err(Bail) => return Err(RequestHeader::explain(frame)),
        };
        let request = Self::parse_at(frame, &header, body)?;
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
        Self::parse_at(frame, header, Reader::new(frame, body_start))
    }

    /// Checks the header's api key and version, then walks the body at `body`.
    #[inline(always)]
    fn parse_at(
        frame: &'a Bytes,
        header: &RequestHeader<'_>,
        body: Reader<'a, Bail>,
    ) -> Result<Self, WireError> {
        // Key 0 and a version in 0..=25 are, as one word (key << 16 | version
        // as u16), exactly the values 0..=25: one compare for both.
        const _: () = assert!(PRODUCE_API_KEY == 0 && PRODUCE_MIN_VERSION == 0);
        let api_version = header.api_version;
        let key_and_version = u32::from(header.api_key) << 16 | u32::from(api_version as u16);
        if key_and_version > PRODUCE_MAX_VERSION as u32 {
            return Err(Self::unexpected_api(header));
        }

        match Self::walk(frame, api_version, body) {
            Ok(view) => Ok(view),
            Err(Bail) => Err(Self::explain(frame, api_version, body.pos())),
        }
    }

    /// The error for a header that is not Produce at a version we read.
    #[cold]
    fn unexpected_api(header: &RequestHeader<'_>) -> WireError {
        if header.api_key != PRODUCE_API_KEY {
            WireError::UnexpectedApiKey {
                expected: PRODUCE_API_KEY,
                found: header.api_key,
            }
        } else {
            WireError::UnsupportedVersion {
                api_key: PRODUCE_API_KEY,
                version: header.api_version,
            }
        }
    }

    /// Walks the body again, to say exactly what is wrong with it. (Only the
    /// error comes back, so the success path never waits on this call's
    /// result in memory.)
    #[cold]
    #[inline(never)]
    fn explain(frame: &Bytes, api_version: i16, body_start: usize) -> WireError {
        detailed_error(ProduceRequest::walk(
            frame,
            api_version,
            Reader::<WireError>::new(frame, body_start),
        ))
    }

    /// The validating walk over the whole body, from `r` at its start.
    #[inline(always)]
    fn walk<E: Fail>(frame: &'a Bytes, api_version: i16, mut r: Reader<'a, E>) -> Result<Self, E> {
        let (transactional_id, acks, timeout_ms, topic_count) = Self::fixed_head(&mut r)?;
        // Both signs with one test; the topic count's error comes first, as
        // it is read first.
        if timeout_ms | topic_count < 0 {
            return Err(E::from_error(|| match usize::try_from(topic_count) {
                Err(_) => WireError::NegativeLength {
                    field: Field::TopicCount,
                    len: topic_count,
                },
                Ok(_) => WireError::NegativeTimeout(timeout_ms),
            }));
        }
        let topic_count = topic_count as usize;

        // The first topic is kept for the view; the others are only checked.
        let first = match topic_count {
            0 => TopicHead::none(r.with_fail()),
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

    /// transactional_id, acks, timeout_ms and the topic count (signs not yet
    /// checked). Clients send no transactional id, and then these are 11
    /// fixed bytes, read with one bounds check.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn fixed_head<E: Fail>(r: &mut Reader<'a, E>) -> Result<(Option<&'a str>, i16, i32, i32), E> {
        if let Some(head) = r.peek::<11>()
            && head[0] == 0
        {
            let acks = i16::from_be_bytes([head[1], head[2]]);
            let timeout_ms = i32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            let topic_count = i32::from_be_bytes([head[7], head[8], head[9], head[10]]);
            r.consume_peeked::<11>();
            return Ok((None, acks, timeout_ms, topic_count));
        }
        let transactional_id = match r.flag(Field::TransactionalId)? {
            true => Some(r.str(Field::TransactionalId)?),
            false => None,
        };
        let acks = r.i16(Field::Acks)?;
        let timeout_ms = r.i32(Field::Timeout)?;
        let topic_count = r.i32(Field::TopicCount)?;
        Ok((transactional_id, acks, timeout_ms, topic_count))
    }

    /// The api_version the body was encoded at; the response uses it too.
    #[inline(always)]
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
    #[inline(always)]
    pub fn topic_count(&self) -> usize {
        self.topic_count
    }

    /// How many partition entries the request holds across all topics,
    /// duplicates included.
    #[inline(always)]
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
    #[inline(always)]
    pub fn first_topic_name(&self) -> Option<&'a str> {
        (self.topic_count > 0).then_some(self.first.name)
    }

    /// The first topic, if there is one; [`Entries::next_topic`] moves on
    /// from it. Its head comes from the validating walk, so nothing is read
    /// again.
    #[inline(always)]
    pub fn first_topic(&self) -> Option<Topic<'a>> {
        (self.topic_count > 0).then(|| Topic::new(self.frame, self.first, self.topic_count - 1))
    }

    /// The topics, in request order.
    #[inline(always)]
    pub fn topics(&self) -> Topics<'a> {
        Topics {
            next: self.first_topic(),
            left: self.topic_count,
        }
    }
}

/// Iterator over the topics of a [`ProduceRequest`].
///
/// Each topic after the first is found by skipping the entries of the one
/// before it ([`Entries::next_topic`]).
#[derive(Clone, Debug)]
pub struct Topics<'a> {
    next: Option<Topic<'a>>,
    left: usize,
}

impl<'a> Iterator for Topics<'a> {
    type Item = Topic<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Topic<'a>> {
        let topic = self.next.take()?;
        self.left -= 1;
        self.next = topic.entries.next_topic();
        Some(topic)
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
    /// The topic of `head`, followed by `topics_after` more.
    #[inline(always)]
    fn new(frame: &'a Bytes, head: TopicHead<'a>, topics_after: usize) -> Self {
        Topic {
            name: head.name,
            partition_count: head.partition_count,
            entries: Entries {
                frame,
                r: head.entries,
                left: head.partition_count,
                topics_after,
            },
        }
    }

    /// The topic name.
    #[inline(always)]
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// How many partition entries follow, duplicates included.
    #[inline(always)]
    pub fn partition_count(&self) -> usize {
        self.partition_count
    }

    /// The partition entries, in request order.
    #[inline(always)]
    pub fn entries(&self) -> Entries<'a> {
        self.entries.clone()
    }
}

/// Iterator over the partition entries of one [`Topic`].
///
/// One reader walks the validated body: through this topic's entries and,
/// with [`next_topic`](Self::next_topic), on into the topics that follow.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    frame: &'a Bytes,
    r: Reader<'a, Bail>,
    /// Entries of this topic not yet read.
    left: usize,
    /// Topics of the request after this one.
    topics_after: usize,
}

impl<'a> Entries<'a> {
    /// An iterator over no entries, followed by no topics.
    pub fn empty() -> Self {
        Entries {
            frame: empty_frame(),
            r: Reader::<Bail>::new(&[], 0),
            left: 0,
            topics_after: 0,
        }
    }

    /// The topic after this one, if any: its head follows this topic's
    /// entries, which are skipped (on a copy) if not all were read.
    ///
    /// The reader only ever moves along the path `parse_body` validated
    /// (entry headers, then a topic head), which is what lets the topic
    /// name be read without checking its UTF-8 again.
    #[inline]
    pub fn next_topic(&self) -> Option<Topic<'a>> {
        if self.topics_after == 0 {
            return None;
        }
        Self::topic_after(self.clone())
    }

    /// Skips what is left of `entries` and reads the next topic's head.
    fn topic_after(mut entries: Self) -> Option<Topic<'a>> {
        for _ in 0..entries.left {
            entries.r.validated_entry()?;
        }
        let head = TopicHead::reread(&mut entries.r)?;
        Some(Topic::new(entries.frame, head, entries.topics_after - 1))
    }
}

/// A frame with no bytes, for iterators over nothing.
fn empty_frame() -> &'static Bytes {
    static EMPTY: Bytes = Bytes::from_static(&[]);
    &EMPTY
}

impl<'a> Iterator for Entries<'a> {
    type Item = PartitionEntry<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<PartitionEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        let Some((partition, start, len)) = self.r.validated_entry() else {
            // Cannot happen on a validated body; should it, end the whole
            // walk here rather than read a topic head off the path.
            self.left = 0;
            self.topics_after = 0;
            return None;
        };
        self.left -= 1;
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
    #[inline(always)]
    pub fn as_slice(&self) -> &'a [u8] {
        // start <= end <= frame.len() was checked by `Reader::skip`.
        &self.frame[self.start..self.end]
    }

    /// The batches as a `Bytes` sharing the frame's memory (no copy).
    #[inline(always)]
    pub fn to_bytes(&self) -> Bytes {
        self.frame.slice(self.start..self.end)
    }

    /// The byte range of the batches within the frame.
    #[inline(always)]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// Length of the record set in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the record set is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}
