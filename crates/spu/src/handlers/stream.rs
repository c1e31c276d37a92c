//! The consumer's side of the protocol: FetchOffsets (1002), StreamFetch
//! (1003) and UpdateOffsets (1005).
//!
//! A consumer asks for a partition's offsets, then opens a stream from an
//! offset. The SPU answers the stream request with a stream id and, whenever
//! records are there, a response carrying them, all under the request's
//! correlation id. Flow control is the consumer's acknowledgement: after a
//! response, the SPU sends nothing more on that stream until the consumer
//! reports, with UpdateOffsets on the same connection, the next offset it
//! wants. New records wake the stream through [`Offsets`]. A connection's
//! stream tasks end with it, and it waits for them.

use std::collections::HashMap;
use std::sync::Arc;

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
use mg_transport::{RequestHeader, decode_body, write_response};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, warn};

use super::fetch::LogSlice;
use super::{HandlerError, Writer};
use crate::changes::Offsets;
use crate::disk::Disk;

/// Cap on one stream response's records, whatever the consumer asks.
const MAX_STREAM_BYTES: u64 = 8 << 20;

/// The streams open on one connection: stream id -> the consumer's acks,
/// and the tasks that push their responses.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    next_id: u32,
    acks: HashMap<u32, watch::Sender<i64>>,
    tasks: JoinSet<()>,
}

impl Streams {
    /// Ends every stream (their ack senders go, so their tasks return) and
    /// waits for their tasks, so none outlives its connection.
    pub(crate) async fn close(mut self) {
        self.acks.clear();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What the stream handlers read from.
pub(crate) struct StreamHandles<'a> {
    pub(crate) roles: &'a RoleTable,
    pub(crate) disk: &'a Disk,
    pub(crate) offsets: &'a Arc<Offsets>,
}

pub(crate) async fn fetch_offsets(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    handles: StreamHandles<'_>,
    out: &mut BytesMut,
) -> Result<(), HandlerError> {
    let version = header.api_version;
    let request: FetchOffsetsRequest = decode_body(frame, body_start, version, "FetchOffsets")?;
    let snapshot = handles.roles.snapshot();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut answer = FetchOffsetPartitionResponse {
                partition_index: p.partition_index,
                ..Default::default()
            };
            if snapshot.get(&topic.name, p.partition_index).is_none() {
                answer.error_code = FluvioCode::NotLeaderForPartition;
            } else {
                match handles
                    .disk
                    .read(&topic.name, p.partition_index, i64::MAX, 0)
                    .await
                {
                    Ok(read) => {
                        answer.start_offset = read.log_start;
                        answer.last_stable_offset = read.high_watermark;
                    }
                    Err(err) => {
                        warn!(topic = %topic.name, partition = p.partition_index, %err, "offsets unavailable");
                        answer.error_code = FluvioCode::StorageError;
                    }
                }
            }
            partitions.push(answer);
        }
        topics.push(FetchOffsetTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    write_response(
        out,
        header.correlation_id,
        version,
        &FetchOffsetsResponse { topics },
    )?;
    Ok(())
}

pub(crate) fn update_offsets(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    streams: &Streams,
    out: &mut BytesMut,
) -> Result<(), HandlerError> {
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
    )?;
    Ok(())
}

/// Opens a stream; its responses are written by a task of its own.
pub(crate) async fn stream_fetch(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    handles: StreamHandles<'_>,
    streams: &mut Streams,
    writer: &Writer,
) -> Result<(), HandlerError> {
    let version = header.api_version;
    let request: StreamFetchRequest<RecordSet<RawRecords>> =
        decode_body(frame, body_start, version, "StreamFetch")?;
    let correlation_id = header.correlation_id;
    let led = handles
        .roles
        .snapshot()
        .get(&request.topic, request.partition)
        .is_some();
    let start = if led {
        handles
            .disk
            .read(&request.topic, request.partition, i64::MAX, 0)
            .await
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
        disk: handles.disk.clone(),
        writer: writer.clone(),
    };
    let ends = handles
        .offsets
        .subscribe(&request.topic, request.partition, end);
    let span =
        debug_span!("stream", stream_id, topic = %request.topic, partition = request.partition);
    streams.tasks.spawn(
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
    disk: Disk,
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
            .disk
            .read(&self.topic, self.partition, from, self.max_bytes)
            .await?;
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
            .map_err(std::io::Error::other)?;
        self.writer.lock().await.write_all(&out).await?;
        Ok(end)
    }
}
