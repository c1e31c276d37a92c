//! Produce: judge every entry, write the accepted ones, answer all of them.
//!
//! ```text
//! frame -> Guard::judge_body -> verdicts (in order)
//!   Accept(records) -> store.append(records slice)  -> Ok(base offset) | Err(code)
//!   Reject(code)    -> never reaches storage
//! read committed (acks = -1): sync every written partition, then answer
//! Judgement::respond(outcomes) -> one response entry per request entry
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_guard::{EntryVerdict, Guard, StoreOutcome, Verdict};
use mg_wire::{
    Entries, ErrorCode, Isolation, ProduceRequest, ProduceResponseWriter, RequestHeader, Topics,
};
use tracing::{trace, trace_span, warn};

use crate::connection::Close;
use crate::server::Shared;

pub(crate) async fn handle(
    frame: &Bytes,
    header: RequestHeader<'_>,
    body_start: usize,
    guard: &mut Guard,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), Close> {
    let correlation_id = header.correlation_id;
    // With the guard off (benchmark only) every entry is accepted; all the
    // rest of the path is the same, so the difference is the guard's cost.
    let (judgement, request) = if shared.config.guard_enabled {
        let judgement = guard.judge_body(frame, header, body_start)?;
        let request = judgement.request().clone();
        (Some(judgement), request)
    } else {
        (
            None,
            ProduceRequest::parse_body(frame, &header, body_start)?,
        )
    };
    let committed = request.isolation() == Isolation::ReadCommitted;
    let entries = request.entry_count();
    let mut outcomes: Vec<StoreOutcome> = Vec::with_capacity(entries);
    // The partition each outcome belongs to, to undo them if a sync fails.
    let mut written: Vec<(&str, u32)> = Vec::with_capacity(entries);
    let mut tally = Tally::default();
    let verdicts = match &judgement {
        Some(judgement) => Verdicts::Judged(judgement.verdicts()),
        None => Verdicts::Unjudged(Unjudged::new(&request)),
    };
    for v in verdicts {
        let _partition =
            trace_span!("partition", topic = v.topic, partition = v.partition).entered();
        let code = match v.verdict {
            Verdict::Accept(records) => {
                let outcome = shared
                    .store
                    .append(v.topic, v.partition, records.as_slice());
                trace!(
                    topic = v.topic,
                    partition = v.partition,
                    ?outcome,
                    "appended"
                );
                let outcome = outcome.map(|appended| {
                    tally.bytes += appended.bytes;
                    if appended.records == 0 {
                        // Fluvio answers an entry with no records with offset 0.
                        return 0;
                    }
                    // Wake the streams waiting on this partition.
                    let end = appended.base_offset + appended.records;
                    shared.offsets.publish(v.topic, v.partition, end);
                    shared.dirty.mark(v.topic, v.partition);
                    appended.base_offset
                });
                written.push((v.topic, v.partition));
                let code = outcome.err().unwrap_or(ErrorCode::None);
                outcomes.push(outcome);
                code
            }
            Verdict::Reject(code) => {
                trace!(topic = v.topic, partition = v.partition, %code, "rejected before storage");
                code
            }
        };
        tally.add(v.topic, code.tag());
    }
    if committed {
        sync_written(shared, &written, &mut outcomes).await;
    }
    match judgement {
        Some(judgement) => {
            judgement
                .respond(outcomes, out)
                .map_err(|err| Close::Io(std::io::Error::other(err.to_string())))?;
        }
        None => respond_unjudged(&request, correlation_id, &outcomes, out),
    }
    shared
        .metrics
        .record_produce(tally.counts.iter().copied(), tally.bytes);
    Ok(())
}

/// The verdicts to act on: the guard's, or (benchmark only) accept-all.
enum Verdicts<'f> {
    Judged(mg_guard::Verdicts<'f>),
    Unjudged(Unjudged<'f>),
}

impl<'f> Iterator for Verdicts<'f> {
    type Item = EntryVerdict<'f>;

    fn next(&mut self) -> Option<EntryVerdict<'f>> {
        match self {
            Verdicts::Judged(v) => v.next(),
            Verdicts::Unjudged(v) => v.next(),
        }
    }
}

/// Every entry of a request, accepted without a look at its role.
struct Unjudged<'f> {
    topics: Topics<'f>,
    current: Option<(&'f str, Entries<'f>)>,
}

impl<'f> Unjudged<'f> {
    fn new(request: &ProduceRequest<'f>) -> Self {
        Self {
            topics: request.topics(),
            current: None,
        }
    }
}

impl<'f> Iterator for Unjudged<'f> {
    type Item = EntryVerdict<'f>;

    fn next(&mut self) -> Option<EntryVerdict<'f>> {
        loop {
            if let Some((topic, entries)) = &mut self.current
                && let Some(entry) = entries.next()
            {
                return Some(EntryVerdict {
                    topic,
                    partition: entry.partition,
                    verdict: Verdict::Accept(entry.records),
                });
            }
            let topic = self.topics.next()?;
            self.current = Some((topic.name(), topic.entries()));
        }
    }
}

fn respond_unjudged(
    request: &ProduceRequest<'_>,
    correlation_id: i32,
    outcomes: &[StoreOutcome],
    out: &mut BytesMut,
) {
    let mut writer = ProduceResponseWriter::begin(
        out,
        correlation_id,
        request.api_version(),
        request.topic_count(),
    );
    let mut outcomes = outcomes.iter();
    for topic in request.topics() {
        writer.topic(topic.name(), topic.partition_count());
        for entry in topic.entries() {
            let (code, offset) = match outcomes.next() {
                Some(Ok(offset)) => (ErrorCode::None, *offset),
                Some(Err(code)) => (*code, 0),
                None => (ErrorCode::UnknownServerError, 0),
            };
            writer.partition(topic.name(), entry.partition, code, offset);
        }
    }
    writer.finish();
}

/// Syncs every partition written by this request; entries of a partition
/// whose sync failed are answered with StorageError.
async fn sync_written(shared: &Shared, written: &[(&str, u32)], outcomes: &mut [StoreOutcome]) {
    let mut partitions: Vec<(String, u32)> = written
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|((topic, partition), _)| (topic.to_string(), *partition))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    if partitions.is_empty() {
        return;
    }
    let store = Arc::clone(&shared.store);
    let failed: Vec<(String, u32)> = tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .filter(|(topic, partition)| match store.sync(topic, *partition) {
                Ok(()) => false,
                Err(err) => {
                    warn!(topic, partition, %err, "sync failed");
                    true
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    for ((topic, partition), outcome) in written.iter().zip(outcomes.iter_mut()) {
        if failed.iter().any(|(t, p)| t == topic && p == partition) {
            *outcome = Err(ErrorCode::StorageError);
        }
    }
}

/// Per-topic outcome counts for the metrics, gathered while answering.
#[derive(Default)]
struct Tally<'a> {
    counts: Vec<(&'a str, i16, u64)>,
    bytes: u64,
}

impl<'a> Tally<'a> {
    fn add(&mut self, topic: &'a str, code: i16) {
        match self
            .counts
            .iter_mut()
            .find(|(t, c, _)| *t == topic && *c == code)
        {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((topic, code, 1)),
        }
    }
}
