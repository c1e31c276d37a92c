//! Every class of malformed frame, sent over a real socket: the offending
//! connection is closed without an answer, the SPU counts it, every other
//! connection keeps being served, and nothing accepted before is lost.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::TestSpu;
use mg_testkit::{ProduceSpec, framed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn produce_frame(topic: &str, value: &str, correlation_id: i32) -> bytes::Bytes {
    ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(
            topic.into(),
            vec![(0, vec![vec![value.as_bytes().to_vec()]])],
        )],
        ..Default::default()
    }
    .frame(25, correlation_id)
}

/// Reads everything the server sends until it closes; fails if it does not.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

fn with_header(api_key: u16, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_u16(api_key);
    frame.put_i16(25);
    frame.put_i32(1);
    frame.put_u16(6);
    frame.put_slice(b"fluvio");
    frame.put_slice(body);
    framed(&frame)
}

/// The malformed inputs, each as the raw bytes a peer sends.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let good = produce_frame("t", "ok", 1);
    let name_at = 16 + 1 + 2 + 4 + 4; // header, txn tag, acks, timeout, topic count
    let records_len_at = name_at + 2 + 1 + 4 + 4; // name "t", partition count, index

    let mut bad_utf8 = BytesMut::from(&good[..]);
    bad_utf8[name_at + 2] = 0xff;
    let mut out_of_bounds = BytesMut::from(&good[..]);
    out_of_bounds[records_len_at..records_len_at + 4].copy_from_slice(&1_000_000i32.to_be_bytes());
    let mut negative_timeout = BytesMut::from(&good[..]);
    negative_timeout[16 + 1 + 2..16 + 1 + 2 + 4].copy_from_slice(&(-5i32).to_be_bytes());
    let mut trailing = BytesMut::from(&good[..]);
    trailing.put_slice(&[1, 2, 3]);

    let mut oversized = (60 * 1024 * 1024i32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0; 64]);
    vec![
        ("truncated header", framed(&good[..7])),
        ("unknown api key", with_header(777, &[])),
        ("length outside the frame", framed(&out_of_bounds)),
        ("invalid UTF-8", framed(&bad_utf8)),
        ("bytes after the body", framed(&trailing)),
        ("negative timeout", framed(&negative_timeout)),
        ("oversized frame", oversized),
        ("negative frame size", (-1i32).to_be_bytes().to_vec()),
        ("garbage fetch body", with_header(1, &[0xde, 0xad])),
        (
            "api versions with trailing bytes",
            with_header(18, &[0, 1, b'x', 0, 0, 0, 0, 9]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_frame_closes_only_its_connection() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);

    // A well-behaved client, connected throughout, writes before and after.
    let mut client = TcpStream::connect(spu.addr()).await.unwrap();
    client
        .write_all(&framed(&produce_frame("t", "before", 100)))
        .await
        .unwrap();
    let _ = read_response(&mut client).await;

    let cases = cases();
    for (name, bytes) in &cases {
        let mut attacker = TcpStream::connect(spu.addr()).await.unwrap();
        // The peer may close before everything is written; that is the point.
        let _ = attacker.write_all(bytes).await;
        let answer = read_until_closed(&mut attacker).await;
        assert!(answer.is_empty(), "{name}: got an answer {answer:?}");
    }
    assert_eq!(spu.spu.metrics().malformed_frames(), cases.len() as u64);

    client
        .write_all(&framed(&produce_frame("t", "after", 101)))
        .await
        .unwrap();
    let (correlation, _) = read_response(&mut client).await;
    assert_eq!(correlation, 101);
    let log = std::fs::read(spu.dir.path().join("t-0").join(format!("{:020}.log", 0))).unwrap();
    assert!(
        log.windows(6).any(|w| w == b"before"),
        "data accepted earlier is still there"
    );
    assert!(log.windows(5).any(|w| w == b"after"));
}

/// A valid request pipelined ahead of a malformed one is answered (and its
/// data kept) before the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_a_malformed_one_are_answered() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let mut stream = TcpStream::connect(spu.addr()).await.unwrap();
    let mut bytes = framed(&produce_frame("t", "kept", 7));
    bytes.extend_from_slice(&with_header(4242, &[]));
    stream.write_all(&bytes).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.len() > 8);
    assert_eq!(i32::from_be_bytes(answer[4..8].try_into().unwrap()), 7);
    assert_eq!(
        i32::from_be_bytes(answer[..4].try_into().unwrap()) as usize,
        answer.len() - 4,
        "exactly one response"
    );
    assert_eq!(spu.spy.appends_to("t", 0), 1);
}

/// Pipelined requests are answered in order, each with its correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let mut stream = TcpStream::connect(spu.addr()).await.unwrap();
    let mut bytes = Vec::new();
    for (i, correlation) in [31, 17, 99, 5].into_iter().enumerate() {
        bytes.extend_from_slice(&framed(&produce_frame("t", &format!("v{i}"), correlation)));
    }
    stream.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (correlation, base_offset) = read_response(&mut stream).await;
        seen.push((correlation, base_offset));
    }
    assert_eq!(seen, vec![(31, 0), (17, 1), (99, 2), (5, 3)]);
}

/// Reads one produce response; returns its correlation id and the first
/// entry's base offset.
async fn read_response(stream: &mut TcpStream) -> (i32, i64) {
    let size = tokio::time::timeout(Duration::from_secs(10), stream.read_i32())
        .await
        .unwrap()
        .unwrap();
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).await.unwrap();
    let correlation = i32::from_be_bytes(body[..4].try_into().unwrap());
    let response =
        <fluvio_spu_schema::produce::ProduceResponse as fluvio_protocol::Decoder>::decode_from(
            &mut std::io::Cursor::new(&body[4..]),
            25,
        )
        .unwrap();
    let entry = &response.responses[0].partitions[0];
    assert!(entry.error_code.is_ok(), "{:?}", entry.error_code);
    (correlation, entry.base_offset)
}
