//! The consumer's side of the protocol: FetchOffsets (1002), StreamFetch
//! (1003) and UpdateOffsets (1005).
//!
//! A consumer asks for a partition's offsets, then opens a stream from an
//! offset. The SPU answers the stream request with a stream id and, whenever
//! records are there, a response carrying them, all under the request's
//! correlation id. Flow control is the consumer's acknowledgement: after a
//! response, the SPU sends nothing more on that stream until the consumer
//! reports, with UpdateOffsets on the same connection, the next offset it
//! wants. New records wake the stream through [`Offsets`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::record::{RawRecords, RecordSet};
use fluvio_spu_schema::fetch::FetchablePartitionResponse;
use fluvio_spu_schema::server::fetch_offset::{
    FetchOffsetPartitionResponse, FetchOffsetTopicResponse, FetchOffsetsRequest,
    FetchOffsetsResponse,
};
use fluvio_spu_schema::server::stream_fetch::{StreamFetchRequest, StreamFetchResponse};
use fluvio_spu_schema::server::update_offset::{
    OffsetUpdateStatus, UpdateOffsetsRequest, UpdateOffsetsResponse,
};
use mg_roles::RoleTable;
use mg_storage::Batches;
use mg_wire::RequestHeader;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, watch};
use tracing::{Instrument, debug, debug_span, warn};

use crate::connection::Close;
use crate::fetch::{LogSlice, decode_body, write_response};
use crate::server::Shared;

/// Cap on one stream response's records, whatever the consumer asks.
const MAX_STREAM_BYTES: u64 = 8 << 20;

/// The log end of every partition someone streams from, so streams wake
/// when produce appends.
#[derive(Debug, Default)]
pub struct Offsets {
    ends: RwLock<HashMap<String, HashMap<u32, watch::Sender<i64>>>>,
}

impl Offsets {
    /// Watches a partition's log end, starting from `current`.
    pub fn subscribe(&self, topic: &str, partition: u32, current: i64) -> watch::Receiver<i64> {
        let mut ends = self.ends.write().unwrap_or_else(|p| p.into_inner());
        let partitions = ends.entry(topic.to_string()).or_default();
        let sender = partitions
            .entry(partition)
            .or_insert_with(|| watch::channel(current).0);
        sender.send_if_modified(|end| {
            let newer = current > *end;
            *end = (*end).max(current);
            newer
        });
        sender.subscribe()
    }

    /// Announces a partition's new log end (after an append).
    pub fn publish(&self, topic: &str, partition: u32, end: i64) {
        let ends = self.ends.read().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = ends.get(topic).and_then(|p| p.get(&partition)) {
            sender.send_if_modified(|current| {
                let newer = end > *current;
                *current = (*current).max(end);
                newer
            });
        }
    }
}

/// The streams open on one connection: stream id -> the consumer's acks.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    next_id: u32,
    acks: HashMap<u32, watch::Sender<i64>>,
}

/// The connection's write half, shared by its request loop and its streams.
pub(crate) type Writer = Arc<Mutex<OwnedWriteHalf>>;

pub(crate) fn fetch_offsets(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    roles: &RoleTable,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), Close> {
    let version = header.api_version;
    let request: FetchOffsetsRequest = decode_body(frame, body_start, version, "FetchOffsets")?;
    let snapshot = roles.snapshot();
    let topics = request
        .topics
        .iter()
        .map(|topic| FetchOffsetTopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let mut answer = FetchOffsetPartitionResponse {
                        partition_index: p.partition_index,
                        ..Default::default()
                    };
                    if snapshot.get(&topic.name, p.partition_index).is_none() {
                        answer.error_code = FluvioCode::NotLeaderForPartition;
                        return answer;
                    }
                    match shared.store.read(&topic.name, p.partition_index, i64::MAX, 0) {
                        Ok(read) => {
                            answer.start_offset = read.log_start;
                            answer.last_stable_offset = read.high_watermark;
                        }
                        Err(err) => {
                            warn!(topic = %topic.name, partition = p.partition_index, %err, "offsets unavailable");
                            answer.error_code = FluvioCode::StorageError;
                        }
                    }
                    answer
                })
                .collect(),
        })
        .collect();
    write_response(
        out,
        header.correlation_id,
        version,
        &FetchOffsetsResponse { topics },
    )
}

pub(crate) fn update_offsets(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    streams: &Streams,
    out: &mut BytesMut,
) -> Result<(), Close> {
    let version = header.api_version;
    let request: UpdateOffsetsRequest = decode_body(frame, body_start, version, "UpdateOffsets")?;
    let status = request
        .offsets
        .iter()
        .map(|update| OffsetUpdateStatus {
            session_id: update.session_id,
            error: match streams.acks.get(&update.session_id) {
                Some(acks) => {
                    acks.send_replace(update.offset);
                    FluvioCode::None
                }
                None => FluvioCode::FetchSessionNotFoud,
            },
        })
        .collect();
    write_response(
        out,
        header.correlation_id,
        version,
        &UpdateOffsetsResponse { status },
    )
}

/// Opens a stream; its responses are written by a task of its own.
pub(crate) async fn stream_fetch(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    roles: &RoleTable,
    shared: &Arc<Shared>,
    streams: &mut Streams,
    writer: &Writer,
) -> Result<(), Close> {
    let version = header.api_version;
    let request: StreamFetchRequest<RecordSet<RawRecords>> =
        decode_body(frame, body_start, version, "StreamFetch")?;
    let correlation_id = header.correlation_id;
    let led = roles
        .snapshot()
        .get(&request.topic, request.partition)
        .is_some();
    let start = if led {
        shared
            .store
            .read(&request.topic, request.partition, i64::MAX, 0)
            .ok()
            .filter(|r| (r.log_start..=r.high_watermark).contains(&request.fetch_offset))
            .map(|r| r.high_watermark)
    } else {
        None
    };
    let Some(end) = start else {
        let code = if led {
            FluvioCode::OffsetOutOfRange
        } else {
            FluvioCode::NotLeaderForPartition
        };
        let response = StreamFetchResponse {
            topic: request.topic.clone(),
            stream_id: 0,
            partition: FetchablePartitionResponse::<LogSlice> {
                partition_index: request.partition,
                error_code: code,
                ..Default::default()
            },
        };
        let mut out = BytesMut::new();
        write_response(&mut out, correlation_id, version, &response)?;
        writer.lock().await.write_all(&out).await?;
        return Ok(());
    };
    streams.next_id = streams.next_id.wrapping_add(1);
    let stream_id = streams.next_id;
    let (ack_tx, acks) = watch::channel(request.fetch_offset);
    streams.acks.insert(stream_id, ack_tx);
    let stream = Stream {
        topic: request.topic.clone(),
        partition: request.partition,
        stream_id,
        correlation_id,
        version,
        max_bytes: u64::try_from(request.max_bytes)
            .unwrap_or(0)
            .clamp(1, MAX_STREAM_BYTES),
        shared: shared.clone(),
        writer: writer.clone(),
    };
    let ends = shared
        .offsets
        .subscribe(&request.topic, request.partition, end);
    let span =
        debug_span!("stream", stream_id, topic = %request.topic, partition = request.partition);
    tokio::spawn(
        stream
            .run(request.fetch_offset, acks, ends)
            .instrument(span),
    );
    Ok(())
}

struct Stream {
    topic: String,
    partition: u32,
    stream_id: u32,
    correlation_id: i32,
    version: i16,
    max_bytes: u64,
    shared: Arc<Shared>,
    writer: Writer,
}

impl Stream {
    /// Sends records from `next` whenever there are some and the consumer
    /// has acknowledged the previous response. Ends when the connection
    /// closes (its ack sender is dropped) or a write fails.
    async fn run(
        self,
        mut next: i64,
        mut acks: watch::Receiver<i64>,
        mut ends: watch::Receiver<i64>,
    ) {
        let mut awaiting_ack = None;
        loop {
            if awaiting_ack.is_none() {
                match self.send_from(next).await {
                    Ok(sent) => awaiting_ack = sent,
                    Err(err) => return debug!(%err, "stream closed"),
                }
            }
            tokio::select! {
                acked = acks.changed() => {
                    if acked.is_err() {
                        return debug!("connection closed");
                    }
                    // The consumer names the next offset it wants.
                    next = *acks.borrow_and_update();
                    awaiting_ack = None;
                }
                grown = ends.changed() => {
                    if grown.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends the records from `from`, if there are any (as Fluvio does, an
    /// empty read sends nothing); returns the offset the consumer will
    /// acknowledge.
    async fn send_from(&self, from: i64) -> std::io::Result<Option<i64>> {
        let read = self
            .shared
            .store
            .read(&self.topic, self.partition, from, self.max_bytes)?;
        let end = Batches::new(&read.records)
            .filter_map(Result::ok)
            .last()
            .map(|b| b.base_offset + b.records);
        if end.is_none() {
            return Ok(None);
        }
        let response = StreamFetchResponse {
            topic: self.topic.clone(),
            stream_id: self.stream_id,
            partition: FetchablePartitionResponse::<LogSlice> {
                partition_index: self.partition,
                high_watermark: read.high_watermark,
                log_start_offset: read.log_start,
                records: LogSlice(read.records),
                ..Default::default()
            },
        };
        let mut out = BytesMut::new();
        write_response(&mut out, self.correlation_id, self.version, &response)
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        self.writer.lock().await.write_all(&out).await?;
        Ok(end)
    }
}
