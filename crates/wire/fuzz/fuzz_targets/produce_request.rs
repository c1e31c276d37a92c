//! Feeds arbitrary bytes to the frame decoder as a received frame.
//!
//! The decoder must return a view or a typed error, never panic or read out
//! of bounds; when it returns a view, walking it and answering it must hold
//! together (every entry inside the frame, one response entry per entry).

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mg_wire::{ErrorCode, ProduceRequest, ProduceResponseWriter, frame_size};

fuzz_target!(|data: &[u8]| {
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
    let len = writer.finish();
    assert_eq!(len, out.len());
});
