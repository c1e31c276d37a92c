//! Fetch: read a partition from an offset, for the official consumer.
//!
//! Not on the hot path, so it uses Fluvio's own request and response types;
//! the records go out as stored, through [`LogSlice`], never re-encoded.

use std::io::{Cursor, Error as IoError};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::record::{RawRecords, RecordSet};
use fluvio_protocol::{Decoder, Encoder, Version};
use fluvio_spu_schema::fetch::{
    FetchRequest, FetchResponse, FetchablePartitionResponse, FetchableTopicResponse,
};
use mg_roles::RoleTable;
use mg_wire::{RequestHeader, WireError};
use tracing::warn;

use crate::connection::Close;
use crate::server::Shared;

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

pub(crate) fn handle(
    frame: &Bytes,
    header: RequestHeader<'_>,
    body_start: usize,
    roles: &Arc<RoleTable>,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), Close> {
    let version = header.api_version;
    let request: FetchRequest<RecordSet<RawRecords>> =
        decode_body(frame, body_start, version, "Fetch")?;
    let snapshot = roles.snapshot();
    let topics = request
        .topics
        .iter()
        .map(|topic| FetchableTopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .fetch_partitions
                .iter()
                .map(|p| {
                    let mut answer = FetchablePartitionResponse::<LogSlice> {
                        partition_index: p.partition_index,
                        ..Default::default()
                    };
                    if snapshot.get(&topic.name, p.partition_index).is_none() {
                        answer.error_code = FluvioCode::NotLeaderForPartition;
                        return answer;
                    }
                    let max = u64::try_from(p.max_bytes.max(request.max_bytes))
                        .unwrap_or(0)
                        .clamp(1, MAX_FETCH_BYTES);
                    match shared.store.read(&topic.name, p.partition_index, p.fetch_offset, max) {
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
                    answer
                })
                .collect(),
            data: Default::default(),
        })
        .collect();
    let response = FetchResponse {
        topics,
        ..Default::default()
    };
    write_response(out, header.correlation_id, version, &response)
}

/// Writes a response frame whose body is a Fluvio type, encoded at `version`.
pub(crate) fn write_response<T: Encoder>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: Version,
    body: &T,
) -> Result<(), Close> {
    let size = i32::try_from(4 + body.write_size(version))
        .map_err(|_| Close::Io(std::io::Error::other("response too large")))?;
    out.reserve(4 + size as usize);
    out.put_i32(size);
    out.put_i32(correlation_id);
    let start = out.len();
    let mut writer = out.writer();
    body.encode(writer.get_mut(), version).map_err(Close::Io)?;
    let out = writer.into_inner();
    debug_assert_eq!(out.len() - start + 4, size as usize);
    Ok(())
}

/// Decodes a request body with Fluvio's decoder; it must use every byte.
pub(crate) fn decode_body<T: Decoder + Default>(
    frame: &Bytes,
    body_start: usize,
    version: Version,
    api: &'static str,
) -> Result<T, Close> {
    let mut body = Cursor::new(&frame[body_start..]);
    let value = T::decode_from(&mut body, version).map_err(|err| Close::MalformedBody {
        api,
        reason: err.to_string(),
    })?;
    let left = frame.len() - body_start - body.position() as usize;
    if left > 0 {
        return Err(Close::Malformed(WireError::TrailingBytes { count: left }));
    }
    Ok(value)
}
