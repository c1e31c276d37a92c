//! The consumer's protocol, driven through fluvio-socket's multiplexer the
//! way the official consumer drives it: FetchOffsets, then a StreamFetch
//! whose responses arrive as records do, paced by UpdateOffsets.

mod common;

use std::time::Duration;

use common::TestSpu;
use fluvio_protocol::api::RequestMessage;
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::record::{Batch, RawRecords, RecordSet};
use fluvio_socket::{FluvioSocket, MultiplexerSocket};
use fluvio_spu_schema::server::fetch_offset::FetchOffsetsRequest;
use fluvio_spu_schema::server::stream_fetch::{
    DefaultStreamFetchRequest, DefaultStreamFetchResponse,
};
use fluvio_spu_schema::server::update_offset::{OffsetUpdate, UpdateOffsetsRequest};
use futures_util::StreamExt;
use mg_testkit::ProduceSpec;

async fn produce(spu: &TestSpu, topic: &str, values: &[&str]) {
    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(
            topic.into(),
            vec![(
                0,
                vec![values.iter().map(|v| v.as_bytes().to_vec()).collect()],
            )],
        )],
        ..Default::default()
    };
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    let response = socket
        .send(&RequestMessage::new_request(spec.to_fluvio()))
        .await
        .unwrap()
        .response;
    assert!(response.responses[0].partitions[0].error_code.is_ok());
}

fn stream_request(topic: &str, offset: i64) -> RequestMessage<DefaultStreamFetchRequest> {
    let mut request = DefaultStreamFetchRequest::default();
    request.topic = topic.into();
    request.partition = 0;
    request.fetch_offset = offset;
    request.max_bytes = 1 << 20;
    RequestMessage::new_request(request)
}

/// (offset, value) of every record in a stream response.
fn records(response: &DefaultStreamFetchResponse) -> Vec<(i64, String)> {
    let set: &RecordSet<RawRecords> = &response.partition.records;
    let mut out = Vec::new();
    for raw in &set.batches {
        let base = raw.get_base_offset();
        let batch: Batch = raw.clone().try_into().expect("decodes");
        for (i, record) in batch.records().iter().enumerate() {
            out.push((
                base + i as i64,
                String::from_utf8_lossy(record.value().as_ref()).into_owned(),
            ));
        }
    }
    out
}

async fn next<S: futures_util::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a stream response")
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_records_as_they_arrive_paced_by_acks() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    produce(&spu, "t", &["a", "b", "c"]).await;

    let socket = MultiplexerSocket::shared(FluvioSocket::connect(&spu.addr()).await.unwrap());
    let offsets = socket
        .send_and_receive(RequestMessage::new_request(FetchOffsetsRequest::new(
            "t".into(),
            0,
        )))
        .await
        .unwrap();
    let offsets = &offsets.topics[0].partitions[0];
    assert_eq!(
        (
            offsets.error_code.clone(),
            offsets.start_offset,
            offsets.last_stable_offset
        ),
        (FluvioCode::None, 0, 3)
    );

    let mut stream = socket
        .create_stream(stream_request("t", 1), 10)
        .await
        .unwrap();
    let first = next(&mut stream).await.unwrap();
    assert_eq!(first.partition.error_code, FluvioCode::None);
    assert_eq!(first.partition.high_watermark, 3);
    // Whole batches come back; the consumer drops records before its offset.
    assert_eq!(
        records(&first),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    assert_eq!(first.partition.next_offset_for_fetch(), Some(3));
    let stream_id = first.stream_id;

    // New records arrive; the consumer acknowledges what it has; they come.
    produce(&spu, "t", &["d", "e"]).await;
    let ack = |offset| {
        RequestMessage::new_request(UpdateOffsetsRequest {
            offsets: vec![OffsetUpdate {
                offset,
                session_id: stream_id,
            }],
        })
    };
    let status = socket.send_and_receive(ack(3)).await.unwrap();
    assert_eq!(status.status[0].error, FluvioCode::None);
    let second = next(&mut stream).await.unwrap();
    assert_eq!(records(&second), vec![(3, "d".into()), (4, "e".into())]);
    assert_eq!(second.stream_id, stream_id);

    // Acknowledged and caught up: the next record wakes the stream by itself.
    socket.send_and_receive(ack(5)).await.unwrap();
    produce(&spu, "t", &["f"]).await;
    assert_eq!(
        records(&next(&mut stream).await.unwrap()),
        vec![(5, "f".into())]
    );

    // An ack for a stream this connection does not have.
    let unknown = socket
        .send_and_receive(RequestMessage::new_request(UpdateOffsetsRequest {
            offsets: vec![OffsetUpdate {
                offset: 0,
                session_id: stream_id + 100,
            }],
        }))
        .await
        .unwrap();
    assert_eq!(unknown.status[0].error, FluvioCode::FetchSessionNotFoud);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_refuse_partitions_not_led_and_offsets_out_of_range() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    produce(&spu, "t", &["a"]).await;
    let socket = MultiplexerSocket::shared(FluvioSocket::connect(&spu.addr()).await.unwrap());

    let mut elsewhere = socket
        .create_stream(stream_request("other", 0), 1)
        .await
        .unwrap();
    assert_eq!(
        next(&mut elsewhere).await.unwrap().partition.error_code,
        FluvioCode::NotLeaderForPartition
    );
    let mut beyond = socket
        .create_stream(stream_request("t", 5), 1)
        .await
        .unwrap();
    assert_eq!(
        next(&mut beyond).await.unwrap().partition.error_code,
        FluvioCode::OffsetOutOfRange
    );

    let offsets = socket
        .send_and_receive(RequestMessage::new_request(FetchOffsetsRequest::new(
            "other".into(),
            0,
        )))
        .await
        .unwrap();
    assert_eq!(
        offsets.topics[0].partitions[0].error_code,
        FluvioCode::NotLeaderForPartition
    );
}
