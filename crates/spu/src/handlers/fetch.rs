//! Fetch: read a partition from an offset, for the official consumer.
//!
//! Not on the hot path, so it uses Fluvio's own request and response types;
//! the records go out as stored, through [`LogSlice`], never re-encoded.

use std::io::Error as IoError;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::record::{RawRecords, RecordSet};
use fluvio_protocol::{Decoder, Encoder, Version};
use fluvio_spu_schema::fetch::{
    FetchRequest, FetchResponse, FetchablePartitionResponse, FetchableTopicResponse,
};
use mg_roles::RoleTable;
use mg_transport::{RequestHeader, decode_body, write_response};
use tracing::warn;

use super::HandlerError;
use crate::disk::Disk;

/// Cap on what one partition returns per fetch, whatever the client asks.
const MAX_FETCH_BYTES: u64 = 8 << 20;

/// Batches read from a log, sent on as they are: i32 length, then the bytes.
#[derive(Debug, Default)]
pub struct LogSlice(pub Vec<u8>);

impl Encoder for LogSlice {
    fn write_size(&self, _version: Version) -> usize {
        4 + self.0.len()
    }

    fn encode<T: BufMut>(&self, dest: &mut T, _version: Version) -> Result<(), IoError> {
        let len = i32::try_from(self.0.len()).map_err(IoError::other)?;
        dest.put_i32(len);
        dest.put_slice(&self.0);
        Ok(())
    }
}

impl Decoder for LogSlice {
    fn decode<T: Buf>(&mut self, src: &mut T, _version: Version) -> Result<(), IoError> {
        if src.remaining() < 4 {
            return Err(IoError::new(
                std::io::ErrorKind::UnexpectedEof,
                "record set length",
            ));
        }
        let len = usize::try_from(src.get_i32()).map_err(IoError::other)?;
        if src.remaining() < len {
            return Err(IoError::new(
                std::io::ErrorKind::UnexpectedEof,
                "record set",
            ));
        }
        self.0 = vec![0; len];
        src.copy_to_slice(&mut self.0);
        Ok(())
    }
}

pub(crate) async fn handle(
    frame: &Bytes,
    header: RequestHeader<'_>,
    body_start: usize,
    roles: &RoleTable,
    disk: &Disk,
    out: &mut BytesMut,
) -> Result<(), HandlerError> {
    let version = header.api_version;
    let request: FetchRequest<RecordSet<RawRecords>> =
        decode_body(frame, body_start, version, "Fetch")?;
    let snapshot = roles.snapshot();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.fetch_partitions.len());
        for p in &topic.fetch_partitions {
            let mut answer = FetchablePartitionResponse::<LogSlice> {
                partition_index: p.partition_index,
                ..Default::default()
            };
            if snapshot.get(&topic.name, p.partition_index).is_none() {
                answer.error_code = FluvioCode::NotLeaderForPartition;
                partitions.push(answer);
                continue;
            }
            let max = u64::try_from(p.max_bytes.max(request.max_bytes))
                .unwrap_or(0)
                .clamp(1, MAX_FETCH_BYTES);
            match disk
                .read(&topic.name, p.partition_index, p.fetch_offset, max)
                .await
            {
                Ok(read) => {
                    answer.high_watermark = read.high_watermark;
                    answer.log_start_offset = read.log_start;
                    if p.fetch_offset > read.high_watermark || p.fetch_offset < read.log_start {
                        answer.error_code = FluvioCode::OffsetOutOfRange;
                    } else {
                        answer.records = LogSlice(read.records);
                    }
                }
                Err(err) => {
                    warn!(topic = %topic.name, partition = p.partition_index, %err, "fetch read failed");
                    answer.error_code = FluvioCode::StorageError;
                }
            }
            partitions.push(answer);
        }
        topics.push(FetchableTopicResponse {
            name: topic.name.clone(),
            partitions,
            data: Default::default(),
        });
    }
    let response = FetchResponse {
        topics,
        ..Default::default()
    };
    write_response(out, header.correlation_id, version, &response)?;
    Ok(())
}
