//! The SPU's limits over a real socket: a frame that stalls half-sent is
//! closed at the read deadline (while an idle connection is left alone),
//! and a connection over the limit is refused at once. Everyone else keeps
//! being served throughout.

mod common;

use std::time::Duration;

use common::TestSpu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Awaits the server closing `stream`; fails if it does not within 20 s.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut chunk = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the server did not close the connection: {read:?}"
    );
}

fn produce_frame(correlation_id: i32) -> Vec<u8> {
    mg_testkit::one_record_request("t", 0, correlation_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_that_stalls_is_closed_at_the_read_deadline() {
    let spu = TestSpu::start_with(|config| config.read_timeout = Duration::from_millis(300)).await;
    spu.lead(1, &[("t", 0, None)]);

    let mut idle = TcpStream::connect(spu.spu.addr()).await.unwrap();
    let mut stalled = TcpStream::connect(spu.spu.addr()).await.unwrap();
    // Size prefix of a 100-byte frame, then 6 bytes of it, then nothing.
    stalled.write_all(&100i32.to_be_bytes()).await.unwrap();
    stalled.write_all(&[0, 0, 0, 25, 0, 0]).await.unwrap();
    closed_by_server(&mut stalled).await;
    assert_eq!(spu.spu.metrics().malformed_frames(), 1);

    // The idle connection, which never began a frame, is still served.
    let addr = spu.addr();
    let answered = tokio::task::spawn_blocking(move || {
        mg_testkit::produce_code(&addr, "t", 0) // a second client meanwhile
    })
    .await
    .unwrap();
    assert_eq!(answered, 0);
    idle.write_all(&produce_frame(9)).await.unwrap();
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), idle.read_exact(&mut size))
        .await
        .expect("the idle connection is answered")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_limit_is_refused_and_counted() {
    let spu = TestSpu::start_with(|config| config.max_connections = 2).await;
    spu.lead(1, &[("t", 0, None)]);
    // Accepted in the order they connect: the third is over the limit.
    let mut first = TcpStream::connect(spu.spu.addr()).await.unwrap();
    let _second = TcpStream::connect(spu.spu.addr()).await.unwrap();
    let mut third = TcpStream::connect(spu.spu.addr()).await.unwrap();
    closed_by_server(&mut third).await;
    assert_eq!(spu.spu.metrics().connections_refused(), 1);
    // The two within the limit are served.
    first.write_all(&produce_frame(3)).await.unwrap();
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), first.read_exact(&mut size))
        .await
        .expect("the first connection is answered")
        .unwrap();
    let body = i32::from_be_bytes(size);
    assert!(body > 0);
}
