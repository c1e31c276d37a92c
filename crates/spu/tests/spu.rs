//! The SPU over real sockets, driven by Fluvio 0.50.1's own client crates.

mod common;

use common::{SPU_ID, TestSpu};
use fluvio_protocol::api::RequestMessage;
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::link::versions::ApiVersionsRequest;
use fluvio_protocol::record::{RawRecords, RecordSet};
use fluvio_socket::FluvioSocket;
use fluvio_spu_schema::fetch::{FetchPartition, FetchRequest, FetchableTopic};
use fluvio_spu_schema::produce::DefaultProduceRequest;
use mg_roles::{ReplicaRole, RoleChange, RoleUpdate};
use mg_testkit::{EntrySpec, ProduceSpec, home, remote};

fn values(batch: &[&str]) -> Vec<Vec<u8>> {
    batch.iter().map(|v| v.as_bytes().to_vec()).collect()
}

fn produce(
    topics: Vec<(&str, Vec<EntrySpec>)>,
    read_committed: bool,
) -> RequestMessage<DefaultProduceRequest> {
    let spec = ProduceSpec {
        timeout_ms: 1500,
        read_committed,
        topics: topics
            .into_iter()
            .map(|(t, e)| (t.to_string(), e))
            .collect(),
        ..Default::default()
    };
    let mut message = RequestMessage::new_request(spec.to_fluvio());
    message.get_mut_header().set_client_id("fluvio");
    message
}

async fn fetch(
    socket: &mut FluvioSocket,
    topic: &str,
    partition: u32,
    offset: i64,
) -> (FluvioCode, i64, Vec<String>) {
    let request = FetchRequest::<RecordSet<RawRecords>> {
        max_bytes: 1 << 20,
        topics: vec![FetchableTopic {
            name: topic.into(),
            fetch_partitions: vec![FetchPartition {
                partition_index: partition,
                fetch_offset: offset,
                max_bytes: 1 << 20,
                ..Default::default()
            }],
        }],
        ..Default::default()
    };
    let response = socket
        .send(&RequestMessage::new_request(request))
        .await
        .unwrap()
        .response;
    let partition = response
        .find_partition(topic, partition)
        .expect("partition answered");
    let mut found = Vec::new();
    for batch in partition.records.batches {
        let base = batch.get_base_offset();
        let batch: fluvio_protocol::record::Batch = batch.try_into().expect("stored batch decodes");
        for (i, record) in batch.records().iter().enumerate() {
            found.push(format!(
                "{}:{}",
                base + i as i64,
                String::from_utf8_lossy(record.value().as_ref())
            ));
        }
    }
    (partition.error_code, partition.high_watermark, found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertise_what_is_served() {
    let spu = TestSpu::start().await;
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    let request = ApiVersionsRequest {
        client_version: "0.50.1".into(),
        client_os: "linux".into(),
        client_arch: "x86_64".into(),
    };
    let response = socket
        .send(&RequestMessage::new_request(request))
        .await
        .unwrap()
        .response;
    assert_eq!(response.error_code, FluvioCode::None);
    let keys: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert!(keys.contains(&(0, 0, 25)), "{keys:?}");
    assert!(keys.contains(&(1, 0, 25)), "{keys:?}");
    assert_eq!(response.platform_version.to_semver().to_string(), "0.50.1");
}

/// A request mixing allowed and mirror partitions writes only the allowed
/// ones: the client sees each entry's own answer, the spy saw no append for
/// a rejected entry, and the rejected partitions have no log on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entries_never_reach_storage() {
    let spu = TestSpu::start().await;
    spu.lead(
        1,
        &[
            ("orders", 0, None),
            ("orders", 1, None),
            ("to-home", 0, Some(home("edge1", false))),
            ("from-home", 0, Some(remote("home", true))),
        ],
    );
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    let one = |v: &str| vec![values(&[v])];
    let request = produce(
        vec![
            ("orders", vec![(0, one("a")), (1, one("b")), (0, one("c"))]),
            ("to-home", vec![(0, one("mirrored?"))]),
            ("from-home", vec![(0, one("target?"))]),
            ("nowhere", vec![(0, one("lost?"))]),
        ],
        false,
    );
    let response = socket.send(&request).await.unwrap().response;
    let answers: Vec<(String, u32, FluvioCode, i64)> = response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.clone(),
                    p.partition_index,
                    p.error_code.clone(),
                    p.base_offset,
                )
            })
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            ("orders".into(), 0, FluvioCode::None, 0),
            ("orders".into(), 1, FluvioCode::None, 0),
            ("orders".into(), 0, FluvioCode::None, 1),
            ("to-home".into(), 0, FluvioCode::MirrorProduceFromHome, 0),
            (
                "from-home".into(),
                0,
                FluvioCode::MirrorProduceFromRemoteNotAllowed,
                0
            ),
            ("nowhere".into(), 0, FluvioCode::NotLeaderForPartition, 0),
        ]
    );
    assert_eq!(answers[3].2.to_string(), "produce from home is not allowed");
    assert_eq!(
        answers[4].2.to_string(),
        "produce from remote target is not allowed"
    );

    // The spy: storage was asked only for the allowed entries.
    assert_eq!(spu.spy.appends_to("orders", 0), 2);
    assert_eq!(spu.spy.appends_to("orders", 1), 1);
    assert_eq!(spu.spy.appends_to("to-home", 0), 0);
    assert_eq!(spu.spy.appends_to("from-home", 0), 0);
    assert_eq!(spu.spy.appends_to("nowhere", 0), 0);
    // The disk: logs exist for the allowed partitions only.
    let dirs: Vec<String> = std::fs::read_dir(spu.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut dirs = dirs;
    dirs.sort();
    assert_eq!(dirs, vec!["orders-0", "orders-1"]);
    let log = std::fs::read(
        spu.dir
            .path()
            .join("orders-0")
            .join(format!("{:020}.log", 0)),
    )
    .unwrap();
    assert!(log.windows(1).any(|w| w == b"a") && log.windows(1).any(|w| w == b"c"));

    // And the consumer reads back exactly what was accepted.
    assert_eq!(
        fetch(&mut socket, "orders", 0, 0).await,
        (
            FluvioCode::None,
            2,
            vec!["0:a".to_string(), "1:c".to_string()]
        )
    );
    // The guard and the SPU counted the same outcomes.
    let stats = spu.spu.guard_stats().snapshot();
    assert_eq!(
        (
            stats.accepted,
            stats.from_home,
            stats.remote_target,
            stats.not_leader
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(spu.spu.metrics().produce_count("to-home", 11003), 1);
    assert_eq!(spu.spu.metrics().produce_count("orders", 0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_is_answered_after_sync_and_read_uncommitted_does_not_wait() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None), ("t", 1, None)]);
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    let response = socket
        .send(&produce(
            vec![(
                "t",
                vec![
                    (0, vec![values(&["x"])]),
                    (1, vec![values(&["y"])]),
                    (0, vec![values(&["z"])]),
                ],
            )],
            true,
        ))
        .await
        .unwrap()
        .response;
    assert!(
        response.responses[0]
            .partitions
            .iter()
            .all(|p| p.error_code.is_ok())
    );
    // By the time the answer arrived, each written partition was synced once.
    assert_eq!((spu.spy.syncs_of("t", 0), spu.spy.syncs_of("t", 1)), (1, 1));
    socket
        .send(&produce(
            vec![("t", vec![(0, vec![values(&["w"])])])],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(spu.spy.syncs_of("t", 0), 1, "acks = 1 does not sync");
}

/// The SC's update API changes the very next request's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_applies_to_the_next_request() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("m", 0, Some(home("edge1", true)))]);
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    let send = |v: &'static str| produce(vec![("m", vec![(0, vec![values(&[v])])])], false);
    let code = |r: fluvio_spu_schema::produce::ProduceResponse| {
        r.responses[0].partitions[0].error_code.clone()
    };
    assert_eq!(
        code(socket.send(&send("1")).await.unwrap().response),
        FluvioCode::None
    );
    spu.spu.roles().apply(RoleUpdate::Changes {
        epoch: 2,
        changes: vec![RoleChange::Upsert(ReplicaRole {
            topic: "m".into(),
            partition: 0,
            leader: SPU_ID,
            mirror: Some(home("edge1", false)),
        })],
    });
    assert_eq!(
        code(socket.send(&send("2")).await.unwrap().response),
        FluvioCode::MirrorProduceFromHome
    );
    spu.spu.roles().apply(RoleUpdate::Changes {
        epoch: 3,
        changes: vec![RoleChange::Upsert(ReplicaRole {
            topic: "m".into(),
            partition: 0,
            leader: SPU_ID + 1,
            mirror: None,
        })],
    });
    assert_eq!(
        code(socket.send(&send("3")).await.unwrap().response),
        FluvioCode::NotLeaderForPartition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batches_are_refused_with_a_clear_error() {
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let spec = ProduceSpec {
        timeout_ms: 10,
        topics: vec![("t".into(), vec![(0, vec![values(&["payload"])])])],
        ..Default::default()
    };
    let mut frame = BytesMut::from(&spec.frame(25, 9)[..]);
    let at = frame.windows(7).position(|w| w == b"payload").unwrap();
    frame[at] = b'P'; // the CRC no longer matches
    let mut stream = tokio::net::TcpStream::connect(spu.addr()).await.unwrap();
    stream.write_all(&mg_testkit::framed(&frame)).await.unwrap();
    let size = stream.read_i32().await.unwrap() as usize;
    let mut body = vec![0; size];
    stream.read_exact(&mut body).await.unwrap();
    let response =
        <fluvio_spu_schema::produce::ProduceResponse as fluvio_protocol::Decoder>::decode_from(
            &mut std::io::Cursor::new(&body[4..]),
            25,
        )
        .unwrap();
    let code = &response.responses[0].partitions[0].error_code;
    assert_eq!(
        code.to_string(),
        "Other error: invalid record batch: CRC-32C mismatch"
    );
    assert_eq!(
        spu.spy.appends_to("t", 0),
        1,
        "storage checked it and wrote nothing"
    );
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    assert_eq!(
        fetch(&mut socket, "t", 0, 0).await.1,
        0,
        "log end unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let spu = TestSpu::start().await;
    spu.lead(
        1,
        &[("t", 0, None), ("mirror", 0, Some(home("edge1", false)))],
    );
    let mut socket = FluvioSocket::connect(&spu.addr()).await.unwrap();
    socket
        .send(&produce(
            vec![
                ("t", vec![(0, vec![values(&["1"])])]),
                ("mirror", vec![(0, vec![values(&["2"])])]),
            ],
            false,
        ))
        .await
        .unwrap();
    let text = spu.scrape().await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("mirror_guard_produce_accepted_total{topic=\"t\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mirror_guard_produce_rejected_total{topic=\"mirror\",code=\"11003\"} 1"),
        "{text}"
    );
    assert!(text.contains("mirror_guard_open_connections 1"), "{text}");
    assert!(text.contains("mirror_guard_bytes_written_total "), "{text}");
    assert!(
        text.contains("mirror_guard_malformed_frames_total 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_per_topic_code_and_client_id() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let spu = TestSpu::start().await;
    spu.lead(1, &[("mirror", 0, Some(home("edge1", false)))]);
    let spec = mg_testkit::ProduceSpec {
        timeout_ms: 1500,
        topics: vec![("mirror".into(), vec![(0, vec![vec![b"x".to_vec()]])])],
        ..Default::default()
    };
    let mut socket = tokio::net::TcpStream::connect(spu.spu.addr())
        .await
        .unwrap();
    for (correlation, client) in [(1, "fluvio"), (2, "fluvio"), (3, "misconfigured-app")] {
        let frame = mg_testkit::frame(0, 25, correlation, client, &spec.to_fluvio());
        socket.write_all(&mg_testkit::framed(&frame)).await.unwrap();
        let size = socket.read_i32().await.unwrap() as usize;
        let mut body = vec![0u8; size];
        socket.read_exact(&mut body).await.unwrap();
        assert_eq!(mg_testkit::first_entry(&body).1, 11003);
    }
    let refusals = spu.spu.metrics().refusals();
    assert_eq!(refusals.count("mirror", 11003, "fluvio"), 2);
    assert_eq!(refusals.count("mirror", 11003, "misconfigured-app"), 1);
    let text = spu.scrape().await;
    assert!(
        text.contains(
            "mirror_guard_produce_refused_total{topic=\"mirror\",code=\"11003\",client_id=\"misconfigured-app\"} 1"
        ),
        "{text}"
    );
    assert_eq!(spu.spy.appends_to("mirror", 0), 0);
}
