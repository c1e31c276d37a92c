//! [`Guard`] and [`Judgement`]: from a frame to verdicts to a response.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_roles::{PartitionRoles, RoleReader, RoleTable, Snapshot, TopicRoles};
use mg_wire::{
    Entries, ErrorCode, ProduceRequest, ProduceResponseWriter, RequestHeader, Topic, WireError,
};

use crate::stats::{GuardStats, Tally};
use crate::{Verdict, decide, decide_in};

/// What storage made of one accepted entry: its base offset, or the code to
/// answer with (StorageError, MessageTooLarge, PartitionFull, …).
pub type StoreOutcome = Result<i64, ErrorCode>;

/// The produce guard, as one connection holds it.
///
/// Clone it for each connection: clones share the table and the counters,
/// and each keeps its own cached view of the table, so judging takes no lock
/// and touches no shared reference count.
#[derive(Clone, Debug)]
pub struct Guard {
    table: Arc<RoleTable>,
    reader: RoleReader,
    stats: GuardStats,
}

impl Guard {
    /// A guard reading `table`, with fresh counters.
    pub fn new(table: Arc<RoleTable>) -> Self {
        Self {
            reader: table.reader(),
            table,
            stats: GuardStats::default(),
        }
    }

    /// The role table the guard reads.
    pub fn table(&self) -> &Arc<RoleTable> {
        &self.table
    }

    /// The guard's counters.
    pub fn stats(&self) -> &GuardStats {
        &self.stats
    }

    /// Parses a whole Produce frame (the bytes after the size prefix) and
    /// pins the current role snapshot for it.
    #[inline(always)]
    pub fn judge<'a>(&'a mut self, frame: &'a Bytes) -> Result<Judgement<'a>, WireError> {
        let (header, request) = ProduceRequest::parse(frame).inspect_err(|_| {
            self.stats.malformed();
        })?;
        Ok(self.pin(header, request))
    }

    /// Like [`judge`](Self::judge), for a frame whose header the caller
    /// already parsed (to dispatch on its api key).
    #[inline(always)]
    pub fn judge_body<'a>(
        &'a mut self,
        frame: &'a Bytes,
        header: RequestHeader<'a>,
        body_start: usize,
    ) -> Result<Judgement<'a>, WireError> {
        let request = ProduceRequest::parse_body(frame, &header, body_start).inspect_err(|_| {
            self.stats.malformed();
        })?;
        Ok(self.pin(header, request))
    }

    /// Pins the current role snapshot for a parsed request.
    #[inline(always)]
    fn pin<'a>(
        &'a mut self,
        header: RequestHeader<'a>,
        request: ProduceRequest<'a>,
    ) -> Judgement<'a> {
        // The official client sends one topic per request: resolve it through
        // the reader's memo, and hash only the names of any further topics.
        let (snapshot, first_topic) = match request.first_topic_name() {
            Some(name) => self.reader.load_topic(name),
            None => (self.reader.load(), None),
        };
        Judgement {
            header,
            request,
            snapshot,
            first_topic,
            stats: &self.stats,
        }
    }
}

/// A parsed Produce request and the one role snapshot it is judged against.
///
/// It borrows its [`Guard`] mutably, so the guard's cached snapshot cannot
/// move on while a request is being judged and answered.
#[derive(Debug)]
pub struct Judgement<'f> {
    header: RequestHeader<'f>,
    request: ProduceRequest<'f>,
    snapshot: &'f Snapshot,
    /// The roles of the request's first topic in `snapshot`.
    first_topic: Option<&'f TopicRoles>,
    stats: &'f GuardStats,
}

/// The guard's verdict for one partition entry.
#[derive(Clone, Debug)]
pub struct EntryVerdict<'f> {
    /// The entry's topic.
    pub topic: &'f str,
    /// The entry's partition index.
    pub partition: u32,
    /// Accept (with the records) or reject (with the code).
    pub verdict: Verdict<'f>,
}

/// Why [`Judgement::respond`] could not write a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// The caller passed a different number of storage outcomes than there
    /// are accepted entries.
    #[error("{given} storage outcomes for {accepted} accepted entries")]
    OutcomeCount {
        /// Accepted entries in the request.
        accepted: usize,
        /// Outcomes the caller passed.
        given: usize,
    },
}

impl<'f> Judgement<'f> {
    /// The request header.
    pub fn header(&self) -> &RequestHeader<'f> {
        &self.header
    }

    /// The parsed request.
    pub fn request(&self) -> &ProduceRequest<'f> {
        &self.request
    }

    /// The role snapshot the request is judged against.
    pub fn snapshot(&self) -> &'f Snapshot {
        self.snapshot
    }

    /// One verdict per partition entry, in request order, duplicates
    /// included. Each topic name is looked up once.
    #[inline(always)]
    pub fn verdicts(&self) -> Verdicts<'f> {
        let (topic, roles, entries) = match self.request.first_topic() {
            Some(first) => (first.name(), roles_of(self.first_topic), first.entries()),
            None => ("", PartitionRoles::NONE, Entries::empty()),
        };
        Verdicts {
            snapshot: self.snapshot,
            topic,
            roles,
            entries,
        }
    }

    /// Writes the ProduceResponse frame into `out`: one entry per request
    /// entry, in order. Rejected entries carry their code and base offset 0;
    /// accepted entries take, in order, one of `outcomes`.
    ///
    /// Counts the outcomes into the guard's stats. On error nothing is
    /// written and nothing is counted.
    pub fn respond<I>(self, outcomes: I, out: &mut BytesMut) -> Result<usize, RespondError>
    where
        I: IntoIterator<Item = StoreOutcome>,
    {
        let mut outcomes = outcomes.into_iter();
        let start = out.len();
        let mut tally = Tally::default();
        let mut missing = 0usize;
        let mut writer = ProduceResponseWriter::begin(
            out,
            self.header.correlation_id,
            self.request.api_version(),
            self.request.topic_count(),
        );
        let judged = TopicResolver {
            snapshot: self.snapshot,
            first_topic: self.first_topic,
        };
        for (index, topic) in self.request.topics().enumerate() {
            let name = topic.name();
            let roles = judged.roles(index, name);
            writer.topic(name, topic.partition_count());
            for entry in topic.entries() {
                let partition = entry.partition;
                let (code, base_offset) = match decide(roles, entry) {
                    Verdict::Reject(code) => {
                        tally.reject(code);
                        (code, 0)
                    }
                    Verdict::Accept(_) => {
                        tally.accepted += 1;
                        match outcomes.next() {
                            Some(Ok(offset)) => (ErrorCode::None, offset),
                            Some(Err(code)) => {
                                tally.storage_failed += 1;
                                (code, 0)
                            }
                            None => {
                                missing += 1;
                                (ErrorCode::UnknownServerError, 0)
                            }
                        }
                    }
                };
                writer.partition(name, partition, code, base_offset);
            }
        }
        let len = writer.finish();
        let extra = outcomes.count();
        if missing > 0 || extra > 0 {
            out.truncate(start);
            let accepted = tally.accepted as usize;
            return Err(RespondError::OutcomeCount {
                accepted,
                given: accepted - missing + extra,
            });
        }
        self.stats.add(&tally);
        Ok(len)
    }
}

/// Where the roles of the request's topics come from.
#[derive(Clone, Copy, Debug)]
struct TopicResolver<'f> {
    snapshot: &'f Snapshot,
    first_topic: Option<&'f TopicRoles>,
}

impl<'f> TopicResolver<'f> {
    /// The roles of the `index`-th topic of the request, named `name`.
    #[inline]
    fn roles(self, index: usize, name: &str) -> Option<&'f TopicRoles> {
        if index == 0 {
            self.first_topic
        } else {
            self.snapshot.topic(name)
        }
    }
}

/// Iterator over the verdicts of a [`Judgement`].
#[derive(Debug)]
pub struct Verdicts<'f> {
    snapshot: &'f Snapshot,
    /// The current topic, its roles, and its entries not yet judged (which
    /// lead on to the topics after it).
    topic: &'f str,
    roles: PartitionRoles<'f>,
    entries: Entries<'f>,
}

/// The lookup for a topic's roles, or for a topic not led here.
#[inline(always)]
fn roles_of(topic: Option<&TopicRoles>) -> PartitionRoles<'_> {
    topic.map_or(PartitionRoles::NONE, TopicRoles::roles)
}

impl<'f> Iterator for Verdicts<'f> {
    type Item = EntryVerdict<'f>;

    #[inline(always)]
    fn next(&mut self) -> Option<EntryVerdict<'f>> {
        loop {
            if let Some(entry) = self.entries.next() {
                return Some(EntryVerdict {
                    topic: self.topic,
                    partition: entry.partition,
                    verdict: decide_in(self.roles, entry),
                });
            }
            let topic = self.entries.next_topic()?;
            self.enter(topic);
        }
    }

    /// Topic by topic, entry by entry: a nested loop rather than the state
    /// machine of `next`, for `count`, `for_each` and the like.
    #[inline(always)]
    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        loop {
            let (topic, roles) = (self.topic, self.roles);
            acc = self.entries.by_ref().fold(acc, |acc, entry| {
                let verdict = EntryVerdict {
                    topic,
                    partition: entry.partition,
                    verdict: decide_in(roles, entry),
                };
                f(acc, verdict)
            });
            let Some(topic) = self.entries.next_topic() else {
                return acc;
            };
            self.enter(topic);
        }
    }
}

impl<'f> Verdicts<'f> {
    /// Moves on to `topic`, a topic after the first: its roles are looked up
    /// by name (the first topic's came from the reader's memo).
    #[inline]
    fn enter(&mut self, topic: Topic<'f>) {
        self.topic = topic.name();
        self.roles = roles_of(self.snapshot.topic(self.topic));
        self.entries = topic.entries();
    }
}
