//! Pipelined produce requests over a real socket: answered in request
//! order, every one of them, also when the client closes its side right
//! after sending, and when a malformed frame follows them in the same write.

mod common;

use std::time::Duration;

use common::TestSpu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: i32 = 40;

fn produce_frame(correlation_id: i32) -> Vec<u8> {
    mg_testkit::one_record_request("t", 0, correlation_id)
}

/// Reads answers until the server closes: (correlation id, code, offset) each.
async fn answers(stream: &mut TcpStream) -> Vec<(i32, i16, i64)> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut size = [0u8; 4];
            if stream.read_exact(&mut size).await.is_err() {
                return;
            }
            let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            got.push(mg_testkit::first_entry(&body));
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

fn expected() -> Vec<(i32, i16, i64)> {
    (0..REQUESTS).map(|i| (i, 0, i64::from(i))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_before_the_client_closes_its_side_are_all_answered_in_order() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let mut stream = TcpStream::connect(spu.spu.addr()).await.unwrap();
    let wire: Vec<u8> = (0..REQUESTS).flat_map(produce_frame).collect();
    stream.write_all(&wire).await.unwrap();
    stream.shutdown().await.unwrap(); // no more requests; still reading
    assert_eq!(answers(&mut stream).await, expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_ahead_of_a_bad_frame_in_the_same_write_are_answered_first() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let mut stream = TcpStream::connect(spu.spu.addr()).await.unwrap();
    let mut wire: Vec<u8> = (0..REQUESTS).flat_map(produce_frame).collect();
    wire.extend_from_slice(&(-1i32).to_be_bytes()); // a negative frame size
    stream.write_all(&wire).await.unwrap();
    assert_eq!(answers(&mut stream).await, expected());
    assert_eq!(spu.spu.metrics().malformed_frames(), 1);
    assert_eq!(spu.spy.appends_to("t", 0), REQUESTS as usize);
}
