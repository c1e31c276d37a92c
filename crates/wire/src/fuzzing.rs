//! The property the fuzz target (`fuzz/`) and the robustness tests check,
//! kept in one place: whatever bytes arrive as a frame, parsing returns a
//! typed error or a view whose every entry lies inside the frame, and
//! answering that view writes exactly one response entry per request entry.

use bytes::{Bytes, BytesMut};

use crate::{ErrorCode, ProduceRequest, ProduceResponseWriter, frame_size};

/// Runs the property on `data`; panics if it does not hold.
pub fn exercise(data: &[u8]) {
    if let Some(prefix) = data.first_chunk::<4>() {
        let _ = frame_size(*prefix, 1 << 20);
    }
    let frame = Bytes::copy_from_slice(data);
    let Ok((header, request)) = ProduceRequest::parse(&frame) else {
        return;
    };
    let mut out = BytesMut::new();
    let mut writer = ProduceResponseWriter::begin(
        &mut out,
        header.correlation_id,
        request.api_version(),
        request.topic_count(),
    );
    let mut entries = 0;
    for topic in request.topics() {
        writer.topic(topic.name(), topic.partition_count());
        for entry in topic.entries() {
            let range = entry.records.range();
            assert!(range.end <= frame.len());
            assert_eq!(entry.records.to_bytes().len(), range.len());
            writer.partition(topic.name(), entry.partition, ErrorCode::PartitionFull, 0);
            entries += 1;
        }
    }
    assert_eq!(entries, request.entry_count());
    assert_eq!(writer.finish(), out.len());
}
