//! Produce: judge every entry, write the accepted ones, answer all of them.
//!
//! ```text
//! frame -> Guard::judge_body -> verdicts (in order)
//!   Accept(records) -> AppendJob (a slice of the frame, no copy)
//!   Reject(code)    -> never reaches storage
//! Disk::append_all(jobs, commit = acks -1)   one trip to a storage writer
//! Judgement::respond(outcomes) -> one response entry per request entry
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_guard::{Guard, StoreOutcome, Verdict};
use mg_wire::{ErrorCode, Isolation, RequestHeader};
use tracing::{trace, trace_span};

use super::HandlerError;
use crate::changes::{Offsets, Unreported};
use crate::disk::{AppendJob, Disk};
use crate::metrics::Metrics;

/// What produce touches besides the guard: owned, so that a produce can
/// run as a future of its own while its connection reads the next request.
#[derive(Clone, Debug)]
pub(crate) struct ProduceHandles {
    pub(crate) disk: Disk,
    pub(crate) offsets: Arc<Offsets>,
    pub(crate) unreported: Arc<Unreported>,
    pub(crate) metrics: Arc<Metrics>,
    /// Benchmark builds only: whether to judge at all.
    #[cfg(feature = "bench-hooks")]
    pub(crate) guard_enabled: bool,
}

/// Judges a produce frame, appends the accepted entries, and returns the
/// response bytes. It owns what it uses (the frame, a clone of the
/// connection's guard), so the connection can keep several in flight and
/// write their responses in request order. The caller has checked that
/// the frame is a well-formed Produce request.
pub(crate) async fn handle(
    frame: Bytes,
    mut guard: Guard,
    handles: ProduceHandles,
    peer: SocketAddr,
) -> Result<BytesMut, HandlerError> {
    let mut out = BytesMut::new();
    let (header, body_start) = RequestHeader::parse(&frame)?;
    #[cfg(feature = "bench-hooks")]
    if !handles.guard_enabled {
        unguarded::handle(&frame, header, body_start, &handles, &mut out).await?;
        return Ok(out);
    }
    let judgement = guard.judge_body(&frame, header, body_start)?;
    let committed = judgement.request().isolation() == Isolation::ReadCommitted;
    let entries = judgement.request().entry_count();
    // Every entry's (topic, partition, code so far); accepted ones get their
    // storage outcome below.
    let mut judged: Vec<(&str, u32, Option<ErrorCode>)> = Vec::with_capacity(entries);
    let mut jobs = Vec::new();
    for v in judgement.verdicts() {
        match v.verdict {
            Verdict::Accept(records) => {
                jobs.push(AppendJob {
                    topic: frame.slice_ref(v.topic.as_bytes()),
                    partition: v.partition,
                    records: records.to_bytes(),
                });
                judged.push((v.topic, v.partition, None));
            }
            Verdict::Reject(code) => {
                trace!(topic = v.topic, partition = v.partition, %code, "rejected before storage");
                handles.metrics.refusals().refused(
                    v.topic,
                    v.partition,
                    code.tag(),
                    header.client_id,
                    peer,
                );
                judged.push((v.topic, v.partition, Some(code)));
            }
        }
    }
    let appended = if jobs.is_empty() {
        Vec::new()
    } else {
        handles.disk.append_all(jobs, committed).await
    };
    let mut tally = Tally::default();
    let mut outcomes: Vec<StoreOutcome> = Vec::with_capacity(appended.len());
    let mut appended = appended.into_iter();
    for (topic, partition, rejected) in judged {
        let code = match rejected {
            Some(code) => code,
            None => {
                let _span = trace_span!("partition", topic, partition).entered();
                let outcome = appended
                    .next()
                    .unwrap_or(Err(ErrorCode::UnknownServerError));
                trace!(?outcome, "appended");
                let outcome = outcome.map(|appended| {
                    tally.bytes += appended.bytes;
                    if appended.records == 0 {
                        // Fluvio answers an entry with no records with offset 0.
                        return 0;
                    }
                    // Wake the streams waiting on this partition.
                    handles.offsets.publish(
                        topic,
                        partition,
                        appended.base_offset + appended.records,
                    );
                    handles.unreported.mark(topic, partition);
                    appended.base_offset
                });
                let code = outcome.err().unwrap_or(ErrorCode::None);
                outcomes.push(outcome);
                code
            }
        };
        tally.add(topic, code.tag());
    }
    judgement
        .respond(outcomes, &mut out)
        .map_err(|err| HandlerError::Internal(err.to_string()))?;
    handles
        .metrics
        .record_produce(tally.counts.iter().copied(), tally.bytes);
    Ok(out)
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

/// Benchmark builds only (`bench-hooks`): every entry accepted without a
/// look at its role, so `make bench` can measure what the guard costs. Not
/// compiled into the production binary.
#[cfg(feature = "bench-hooks")]
mod unguarded {
    use bytes::{Bytes, BytesMut};
    use mg_wire::{ErrorCode, Isolation, ProduceRequest, ProduceResponseWriter, RequestHeader};

    use super::{HandlerError, ProduceHandles};
    use crate::disk::AppendJob;

    pub(super) async fn handle(
        frame: &Bytes,
        header: RequestHeader<'_>,
        body_start: usize,
        handles: &ProduceHandles,
        out: &mut BytesMut,
    ) -> Result<(), HandlerError> {
        let request = ProduceRequest::parse_body(frame, &header, body_start)?;
        let mut jobs = Vec::with_capacity(request.entry_count());
        for topic in request.topics() {
            for entry in topic.entries() {
                jobs.push(AppendJob {
                    topic: frame.slice_ref(topic.name().as_bytes()),
                    partition: entry.partition,
                    records: entry.records.to_bytes(),
                });
            }
        }
        let committed = request.isolation() == Isolation::ReadCommitted;
        let mut outcomes = handles.disk.append_all(jobs, committed).await.into_iter();
        let mut writer = ProduceResponseWriter::begin(
            out,
            header.correlation_id,
            request.api_version(),
            request.topic_count(),
        );
        for topic in request.topics() {
            writer.topic(topic.name(), topic.partition_count());
            for entry in topic.entries() {
                let (code, offset) = match outcomes.next() {
                    Some(Ok(appended)) => {
                        handles.offsets.publish(
                            topic.name(),
                            entry.partition,
                            appended.base_offset + appended.records,
                        );
                        (ErrorCode::None, appended.base_offset)
                    }
                    Some(Err(code)) => (code, 0),
                    None => (ErrorCode::UnknownServerError, 0),
                };
                writer.partition(topic.name(), entry.partition, code, offset);
            }
        }
        writer.finish();
        Ok(())
    }
}
