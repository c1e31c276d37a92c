//! The fence, over the real control plane: a home SC, a real home SPU, and
//! a remote sender played by hand on the mirror channel. Once a failover
//! is confirmed (the SPU reported the new epoch), not one more record of
//! the old link is appended, the link is closed, a new StartMirror for the
//! pair is refused as fenced, and the partition takes local produce from
//! the offset the mirror stopped at.

mod common;

use std::time::Duration;

use fluvio_spu_schema::server::mirror::StartMirrorRequest;
use mg_controlplane::operate::MirrorAction;
use mg_sc::serve_private;
use mg_spu::mirroring::protocol::{
    HOME_UPDATE_OFFSET, MIRROR_VERSION, REMOTE_SYNC_RECORDS, ReplicaOffsets, START_MIRROR,
    SyncRecords,
};
use mg_spu::{Spu, SpuConfig};
use mg_transport::{FrameLimits, FrameReader, RequestHeader, decode_body, encode_request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOPIC: &str = "orders";

/// The connection of an admitted link: its frames, its write half, and
/// the log end the home announced.
type Linked = (
    FrameReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
    i64,
);

/// A StartMirror as remote `edge1` for `orders-0`; `None` if the home
/// closed the connection instead of announcing its log end.
async fn link(addr: std::net::SocketAddr) -> Option<Linked> {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = socket.into_split();
    let start = StartMirrorRequest {
        remote_replica: format!("{TOPIC}-0"),
        remote_cluster_id: "edge1".into(),
    };
    let frame = encode_request(START_MIRROR, 25, 1, "test", &start).unwrap();
    write.write_all(&frame).await.unwrap();
    let mut frames = FrameReader::new(read, FrameLimits::default());
    let frame = tokio::time::timeout(Duration::from_secs(20), frames.next())
        .await
        .expect("the home announces its log end or closes")
        .ok()??;
    let (header, start) = RequestHeader::parse(&frame).unwrap();
    assert_eq!(
        (header.api_key, header.api_version),
        (HOME_UPDATE_OFFSET, MIRROR_VERSION)
    );
    let offsets: ReplicaOffsets = decode_body(&frame, start, MIRROR_VERSION, "offsets").unwrap();
    Some((frames, write, offsets.leo))
}

/// A SyncRecords of one batch of `values` at `base`.
fn sync(base: i64, values: &[&[u8]]) -> Vec<u8> {
    let mut records = mg_testkit::batch_bytes(&[values]);
    records[..8].copy_from_slice(&base.to_be_bytes());
    let leo = base + values.len() as i64;
    let sync = SyncRecords {
        hw: leo,
        leo,
        records: records.into(),
    };
    let mut frame = sync
        .encode_head(REMOTE_SYNC_RECORDS, 1, "test")
        .unwrap()
        .to_vec();
    frame.extend_from_slice(&sync.records);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_failover_appends_nothing_more_from_the_old_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(&dir.path().join("sc"));
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.register_remote("edge1").unwrap();
    cluster
        .create_mirror_topic(TOPIC, &["edge1".to_string()], false)
        .unwrap();
    let mut config = SpuConfig::new(5001, dir.path().join("spu"));
    config.sc = Some(private.addr());
    // The channel is played in plaintext here; the binding is tested apart.
    config.insecure_mirroring = true;
    let spu = Spu::new(config).unwrap().start().await.unwrap();
    let mut control = spu.control();
    tokio::time::timeout(
        Duration::from_secs(20),
        control.wait_for(|s| s.connected && s.updates >= 1 && s.replica_version == Some(19)),
    )
    .await
    .expect("the SPU gets its roles, with mirror controls")
    .unwrap();

    // The sender's first batch is appended at the home's log end.
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(20);
    // The UpdateMirror naming edge1 may come a moment after the roles:
    // until then the home refuses the remote as unknown.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut frames, mut old, leo) = loop {
        if let Some(linked) = link(spu.addr()).await {
            break linked;
        }
        assert!(tokio::time::Instant::now() < until, "never admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(leo, 0);
    old.write_all(&sync(0, &[b"e0", b"e1"])).await.unwrap();
    cluster
        .wait_until(deadline(), |c| match c.offsets(TOPIC, 0) {
            Some((_, 2, _)) => None,
            other => Some(format!("{other:?}")),
        })
        .await
        .expect("the first batch at the home");

    // Fail over: committed, then confirmed by the SPU at epoch 1.
    let acting = cluster.clone();
    let targets = tokio::task::spawn_blocking(move || {
        acting.act_on_mirror(TOPIC, Some("edge1"), MirrorAction::Failover)
    })
    .await
    .unwrap()
    .unwrap();
    cluster
        .wait_until(deadline(), |c| c.unfenced(&targets))
        .await
        .expect("the SPU confirms the fence");

    // The old link's next batch, sent after the confirmation, is not
    // appended: the next local produce lands at offset 2, right after the
    // mirrored ones.
    let _ = old.write_all(&sync(2, &[b"stale"])).await;
    // Its announcements never go past 2; then it closes the old link.
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), frames.next())
            .await
            .expect("the home closes the old link");
        let Ok(Some(frame)) = next else { break };
        let (_, start) = RequestHeader::parse(&frame).unwrap();
        let offsets: ReplicaOffsets =
            decode_body(&frame, start, MIRROR_VERSION, "offsets").unwrap();
        assert_eq!(offsets.leo, 2, "the stale batch was appended");
    }
    let addr = spu.addr().to_string();
    let (code, offset) =
        tokio::task::spawn_blocking(move || mg_testkit::produce_answer(&addr, TOPIC, 0))
            .await
            .unwrap();
    assert_eq!(
        (code, offset),
        (0, 2),
        "the partition is writable from offset 2"
    );

    // A sender that comes back for the pair is refused as fenced, counted.
    let mut again = TcpStream::connect(spu.addr()).await.unwrap();
    let start = StartMirrorRequest {
        remote_replica: format!("{TOPIC}-0"),
        remote_cluster_id: "edge1".into(),
    };
    again
        .write_all(&encode_request(START_MIRROR, 25, 1, "test", &start).unwrap())
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut again, &mut rest),
    )
    .await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(spu.metrics().mirror_refused_count("fenced") >= 1);

    // The operator's view: failed over, at epoch 1.
    let row = cluster
        .mirror_rows()
        .into_iter()
        .find(|r| r.topic == TOPIC)
        .unwrap();
    assert_eq!((row.state.as_str(), row.epoch), ("failed-over", 1));
    assert_eq!(row.link.map(|l| l.epoch), Some(1));
}

/// An SPU that reads no mirror controls (registered at v1, as before this
/// extension) is sent a failed-over partition as an ordinary one: it
/// refuses home produce while the partition mirrors, and takes it after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_spu_without_controls_gets_an_ended_mirror_as_an_ordinary_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(&dir.path().join("sc"));
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.register_remote("edge1").unwrap();
    cluster
        .create_mirror_topic(TOPIC, &["edge1".to_string()], false)
        .unwrap();
    let mut config = SpuConfig::new(5001, dir.path().join("spu"));
    config.sc = Some(private.addr());
    config.register_version = mg_controlplane::keys::REGISTER_WITH_FLAGS_VERSION;
    let spu = Spu::new(config).unwrap().start().await.unwrap();
    let mut control = spu.control();
    tokio::time::timeout(
        Duration::from_secs(20),
        control.wait_for(|s| s.connected && s.updates >= 1),
    )
    .await
    .expect("the SPU gets its roles")
    .unwrap();
    assert_eq!(control.borrow().replica_version, Some(18));
    let produce = |spu: &mg_spu::RunningSpu| {
        let addr = spu.addr().to_string();
        tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, TOPIC, 0))
    };
    assert_eq!(produce(&spu).await.unwrap(), 11003);

    let updates = control.borrow().updates;
    let acting = cluster.clone();
    tokio::task::spawn_blocking(move || acting.act_on_mirror(TOPIC, None, MirrorAction::Failover))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        control.wait_for(|s| s.updates > updates),
    )
    .await
    .expect("the SPU hears of the failover")
    .unwrap();
    assert_eq!(produce(&spu).await.unwrap(), 0);
}
