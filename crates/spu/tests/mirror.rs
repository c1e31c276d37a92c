//! The mirror channel between two real SPUs (a home and an edge) over
//! loopback: records reach the other cluster with their offsets and bytes,
//! through the mirror channel only, in both directions; and everything a
//! misbehaving peer sends closes only its own connection, storing nothing.

mod common;

use std::time::Duration;

use common::{TestSpu, eventually};
use fluvio_controlplane_metadata::mirror::{ClientTls, Home, MirrorSpec, MirrorType, Remote};
use fluvio_controlplane_metadata::partition::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig,
};
use fluvio_spu_schema::server::mirror::StartMirrorRequest;
use mg_controlplane::{Mirror, UpdateMirrorRequest};
use mg_spu::mirroring::protocol::{
    HOME_UPDATE_OFFSET, MIRROR_VERSION, REMOTE_SYNC_RECORDS, REMOTE_UPDATE_OFFSET, ReplicaOffsets,
    START_MIRROR, SyncRecords,
};
use mg_transport::{FrameLimits, FrameReader, RequestHeader, decode_body, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "metrics";

fn home_role(remote: &str, source: bool) -> Option<PartitionMirrorConfig> {
    Some(PartitionMirrorConfig::Home(HomePartitionConfig {
        remote_cluster: remote.into(),
        remote_replica: format!("{TOPIC}-0"),
        source,
    }))
}

fn remote_role(home: &TestSpu, target: bool) -> Option<PartitionMirrorConfig> {
    Some(PartitionMirrorConfig::Remote(RemotePartitionConfig {
        home_cluster: "home".into(),
        home_spu_key: "5001".into(),
        home_spu_id: 5001,
        home_spu_endpoint: home.addr(),
        target,
    }))
}

fn mirrors(objects: Vec<MirrorType>) -> UpdateMirrorRequest {
    UpdateMirrorRequest {
        epoch: 1,
        all: objects
            .into_iter()
            .map(|mirror_type| Mirror {
                name: match &mirror_type {
                    MirrorType::Remote(r) => r.id.clone(),
                    MirrorType::Home(h) => h.id.clone(),
                },
                spec: MirrorSpec { mirror_type },
            })
            .collect(),
        changes: Vec::new(),
    }
}

fn registered(remotes: &[&str]) -> UpdateMirrorRequest {
    mirrors(
        remotes
            .iter()
            .map(|id| MirrorType::Remote(Remote { id: id.to_string() }))
            .collect(),
    )
}

/// The home's TLS domain: its SPUs are dialed as `<key>.home.test`.
const DOMAIN: &str = "home.test";

/// A home SPU with a CA of its own: mirror traffic only over TLS.
async fn start_home() -> TestSpu {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    mg_pki::init_home(&tls, DOMAIN, &["localhost"]).unwrap();
    TestSpu::start_in(dir, |config| config.tls_dir = Some(tls)).await
}

fn home_ca(home: &TestSpu) -> mg_pki::Ca {
    mg_pki::Ca::load(&home.dir.path().join("tls")).unwrap()
}

/// A certificate for `remote_id`, recorded as issued (as `remote export`
/// does).
fn issue(home: &TestSpu, remote_id: &str) -> mg_pki::Issued {
    let issued = home_ca(home)
        .issue_client(remote_id, mg_pki::DEFAULT_VALIDITY)
        .unwrap();
    let tls = home.dir.path().join("tls");
    mg_pki::record_issued(&tls, remote_id, &issued.fingerprint, false).unwrap();
    issued
}

/// What `remote export` gives remote `remote_id` of this home.
fn client_tls(home: &TestSpu, remote_id: &str) -> ClientTls {
    let ca = home_ca(home);
    let issued = issue(home, remote_id);
    ClientTls {
        domain: DOMAIN.into(),
        ca_cert: ca.cert_pem(),
        client_cert: issued.cert_pem,
        client_key: issued.key_pem,
    }
}

fn home_object(home: &TestSpu, remote_id: &str) -> UpdateMirrorRequest {
    mirrors(vec![MirrorType::Home(Home {
        id: "home".into(),
        remote_id: remote_id.into(),
        public_endpoint: home.addr(),
        client_tls: Some(client_tls(home, remote_id)),
    })])
}

async fn produce(spu: &TestSpu, topic: &str) -> i16 {
    let addr = spu.addr();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, &topic, 0))
        .await
        .unwrap()
}

/// A home leading edge1's partition of `metrics`, and edge1 leading its own.
async fn pair(home_to_remote: bool) -> (TestSpu, TestSpu) {
    let home = start_home().await;
    home.spu.apply_mirrors(registered(&["edge1"]));
    home.lead(1, &[(TOPIC, 0, home_role("edge1", home_to_remote))]);
    let edge = TestSpu::start().await;
    edge.spu.apply_mirrors(home_object(&home, "edge1"));
    edge.lead(1, &[(TOPIC, 0, remote_role(&home, home_to_remote))]);
    (home, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_records_reach_the_home_with_their_offsets_and_bytes_through_the_mirror_only() {
    let (home, edge) = pair(false).await;
    for _ in 0..3 {
        assert_eq!(produce(&edge, TOPIC).await, 0);
    }
    eventually("the home holds the edge's three records", || {
        home.leo(TOPIC, 0) == 3
    })
    .await;
    assert_eq!(home.stored(TOPIC, 0), edge.stored(TOPIC, 0));

    // A home producer is refused, and nothing reaches storage from it.
    assert_eq!(produce(&home, TOPIC).await, 11003);
    assert_eq!(
        home.spy.appends_to(TOPIC, 0),
        0,
        "no produce append at home"
    );
    assert!(home.spy.mirrored_to(TOPIC, 0) >= 1);

    // More records later: they follow, contiguous, nothing doubled.
    for _ in 0..5 {
        assert_eq!(produce(&edge, TOPIC).await, 0);
    }
    eventually("the home catches up", || home.leo(TOPIC, 0) == 8).await;
    assert_eq!(home.stored(TOPIC, 0), edge.stored(TOPIC, 0));
    let metrics = home.spu.metrics();
    let link = metrics.link("edge1", TOPIC, 0, "receiver");
    // Counted once the append returns; the log may show it a moment sooner.
    eventually("the link counts the eight records", || link.records() == 8).await;
    assert_eq!(link.bytes() as usize, home.stored(TOPIC, 0).len());
    let sent = edge.spu.metrics().link("edge1", TOPIC, 0, "sender");
    eventually("the edge sees no lag", || sent.lag() == 0).await;
    assert_eq!(sent.bytes(), link.bytes(), "byte counts match at both ends");

    // The same, as Prometheus scrapes it.
    let text = home.scrape().await;
    let labels = "remote=\"edge1\",topic=\"metrics\",partition=\"0\",role=\"receiver\"";
    for line in [
        format!("mirror_guard_mirror_records_total{{{labels}}} 8"),
        format!(
            "mirror_guard_mirror_bytes_total{{{labels}}} {}",
            link.bytes()
        ),
        format!("mirror_guard_mirror_lag_records{{{labels}}} 0"),
        format!("mirror_guard_mirror_connected{{{labels}}} 1"),
        format!("mirror_guard_mirror_refused_batches_total{{{labels}}} 0"),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
}

/// A record is readable a moment before its append is announced to the
/// sender's watch; a sender that judged the receiver by the watch alone
/// took a receiver that had caught up for one that was ahead, and
/// reconnected. Under a burst of pipelined produce, the link stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_produce_is_mirrored_over_one_session() {
    const REQUESTS: usize = 10_000;
    let (home, edge) = pair(false).await;
    let socket = TcpStream::connect(edge.spu.addr()).await.unwrap();
    let (read, mut write) = socket.into_split();
    let frames: Vec<u8> =
        std::iter::repeat_n(mg_testkit::one_record_request(TOPIC, 0, 1), REQUESTS)
            .flatten()
            .collect();
    let send = async { write.write_all(&frames).await.unwrap() };
    let answers = async {
        let mut frames = FrameReader::new(read, FrameLimits::default());
        for _ in 0..REQUESTS {
            let answer = frames.next().await.unwrap().expect("an answer per request");
            assert_eq!(mg_testkit::first_entry(&answer).1, 0);
        }
    };
    tokio::join!(send, answers);
    eventually("the home holds every record", || {
        home.leo(TOPIC, 0) == REQUESTS as i64
    })
    .await;
    assert_eq!(home.stored(TOPIC, 0), edge.stored(TOPIC, 0));
    let sender = edge.spu.metrics().link("edge1", TOPIC, 0, "sender");
    assert_eq!(sender.sessions(), 1, "the link never reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_to_remote_records_flow_out_and_the_target_refuses_produce() {
    let (home, edge) = pair(true).await;
    for _ in 0..4 {
        assert_eq!(produce(&home, TOPIC).await, 0);
    }
    eventually("the edge holds the home's records", || {
        edge.leo(TOPIC, 0) == 4
    })
    .await;
    assert_eq!(edge.stored(TOPIC, 0), home.stored(TOPIC, 0));
    assert_eq!(produce(&edge, TOPIC).await, 11006);
    assert_eq!(edge.spy.appends_to(TOPIC, 0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_restart_resumes_from_its_log_end_with_no_gap_and_no_duplicate() {
    let (home, edge) = pair(false).await;
    for _ in 0..3 {
        assert_eq!(produce(&edge, TOPIC).await, 0);
    }
    eventually("first records mirrored", || home.leo(TOPIC, 0) == 3).await;
    // The home goes away; the edge keeps taking records.
    let home_addr = home.spu.addr();
    let home_dir = home.dir;
    home.spu.shutdown().await;
    for _ in 0..4 {
        assert_eq!(produce(&edge, TOPIC).await, 0);
    }
    // The home comes back on the same port and data.
    let tls = home_dir.path().join("tls");
    let home = TestSpu::start_in(home_dir, |config| {
        config.listen = home_addr;
        config.tls_dir = Some(tls);
    })
    .await;
    home.spu.apply_mirrors(registered(&["edge1"]));
    home.lead(2, &[(TOPIC, 0, home_role("edge1", false))]);
    eventually("the edge catches the home up", || home.leo(TOPIC, 0) == 7).await;
    assert_eq!(home.stored(TOPIC, 0), edge.stored(TOPIC, 0));
}

/// A connection that did the handshake as `remote` for `replica`.
async fn handshake(home: &TestSpu, remote: &str, replica: &str) -> TcpStream {
    let mut socket = TcpStream::connect(home.spu.addr()).await.unwrap();
    let start = StartMirrorRequest {
        remote_replica: replica.into(),
        remote_cluster_id: remote.into(),
    };
    let frame = encode_request(START_MIRROR, 25, 1, "test", &start).unwrap();
    socket.write_all(&frame).await.unwrap();
    socket
}

async fn closed_by_server(socket: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the home did not close the connection"
    );
}

/// Reads the home's first announcement of its log end.
async fn announced(
    socket: TcpStream,
) -> (
    FrameReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
    i64,
) {
    let (read, write) = socket.into_split();
    let mut frames = FrameReader::new(read, FrameLimits::default());
    let frame = frames.next().await.unwrap().unwrap();
    let (header, start) = RequestHeader::parse(&frame).unwrap();
    assert_eq!(
        (header.api_key, header.api_version),
        (HOME_UPDATE_OFFSET, MIRROR_VERSION)
    );
    let offsets: ReplicaOffsets =
        decode_body(&frame, start, header.api_version, "offsets").unwrap();
    (frames, write, offsets.leo)
}

fn sync_frame(records: Vec<u8>, leo: i64) -> Vec<u8> {
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

/// Frame handling, so over plaintext: a home started with
/// `--insecure-mirroring` (the binding is tested apart, below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mirror_traffic_closes_only_its_connection_and_stores_nothing() {
    let home = TestSpu::start_with(|config| config.insecure_mirroring = true).await;
    home.spu.apply_mirrors(registered(&["edge1", "edge2"]));
    home.lead(
        1,
        &[(TOPIC, 0, home_role("edge1", false)), ("plain", 0, None)],
    );
    let metrics = home.spu.metrics().clone();

    // An unknown remote, and a replica no partition here mirrors.
    let mut unknown = handshake(&home, "edge9", "metrics-0").await;
    closed_by_server(&mut unknown).await;
    assert_eq!(metrics.mirror_refused_count("unknown remote"), 1);
    let mut other = handshake(&home, "edge2", "metrics-0").await;
    closed_by_server(&mut other).await;
    let mut wrong_replica = handshake(&home, "edge1", "other-0").await;
    closed_by_server(&mut wrong_replica).await;
    assert_eq!(
        metrics.mirror_refused_count("no partition here mirrors that remote replica"),
        2
    );

    // After the handshake: a Produce-shaped frame is not a produce; the
    // wrong key, a truncated sync and a batch at the wrong offset close
    // the link.
    let produce_frame = mg_testkit::one_record_request(TOPIC, 0, 5);
    let (_, mut write, leo) = announced(handshake(&home, "edge1", "metrics-0").await).await;
    assert_eq!(leo, 0);
    write.write_all(&produce_frame).await.unwrap();
    let offsets = ReplicaOffsets::default();
    let wrong_key = encode_request(REMOTE_UPDATE_OFFSET, MIRROR_VERSION, 2, "t", &offsets).unwrap();
    let mut truncated = sync_frame(mg_testkit::batch_bytes(&[&[b"x"]]), 1);
    let cut = truncated.len() - 3;
    truncated.truncate(cut);
    let size = (truncated.len() - 4) as i32;
    truncated[..4].copy_from_slice(&size.to_be_bytes());
    let mut misaligned = mg_testkit::batch_bytes(&[&[b"x"]]);
    misaligned[..8].copy_from_slice(&5i64.to_be_bytes());
    // The CRC does not cover the base offset: only its place is wrong.
    for bad in [wrong_key.to_vec(), truncated, sync_frame(misaligned, 6)] {
        let (mut frames, mut write, _) =
            announced(handshake(&home, "edge1", "metrics-0").await).await;
        write.write_all(&bad).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(20), frames.next())
            .await
            .expect("the home closes the link");
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    }
    let receiver = metrics.link("edge1", TOPIC, 0, "receiver");
    assert_eq!(receiver.refused(), 1, "the misaligned batch was counted");
    assert_eq!(home.leo(TOPIC, 0), 0, "nothing stored");
    assert_eq!(home.spy.appends_to(TOPIC, 0), 0);

    // Everyone else is still served.
    assert_eq!(produce(&home, "plain").await, 0);
}

#[test]
fn sync_records_decode_with_fluvios_own_record_set() {
    use fluvio_protocol::Decoder;
    use fluvio_protocol::record::{RawRecords, RecordSet};
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = mg_storage::PartitionLog::open(dir.path(), Default::default()).unwrap();
    log.append(&mg_testkit::batch_bytes(&[&[b"a", b"b"], &[b"c"]]))
        .unwrap();
    let stored = log.read(0, u64::MAX).unwrap();
    let frame = sync_frame(stored.clone(), 3);
    let (header, start) = RequestHeader::parse(&frame[4..]).unwrap();
    assert_eq!(header.api_key, REMOTE_SYNC_RECORDS);
    // Fluvio's MirrorPartitionSyncRequest body: hw, leo, RecordSet.
    let mut body = std::io::Cursor::new(&frame[4 + start..]);
    let hw = i64::decode_from(&mut body, MIRROR_VERSION).unwrap();
    let leo = i64::decode_from(&mut body, MIRROR_VERSION).unwrap();
    let set = RecordSet::<RawRecords>::decode_from(&mut body, MIRROR_VERSION).unwrap();
    assert_eq!((hw, leo), (3, 3));
    let bases: Vec<i64> = set.batches.iter().map(|b| b.base_offset).collect();
    assert_eq!(bases, [0, 2]);
    assert_eq!(body.position() as usize, frame.len() - 4 - start);
}

/// StartMirror over TLS with `issued`'s certificate (of `ca`), claiming
/// `remote` for `replica`.
async fn tls_start(
    home: &TestSpu,
    ca: &mg_pki::Ca,
    issued: &mg_pki::Issued,
    remote: &str,
    replica: &str,
) -> std::io::Result<(
    FrameReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
)> {
    let client = mg_transport::tls::TlsClient::from_pem(
        ca.cert_pem().as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )?;
    let stream = client
        .connect(&home.addr(), &format!("5001.{DOMAIN}"))
        .await?;
    let (read, mut write) = tokio::io::split(stream);
    let start = StartMirrorRequest {
        remote_replica: replica.into(),
        remote_cluster_id: remote.into(),
    };
    let frame = encode_request(START_MIRROR, 25, 1, "test", &start).unwrap();
    write.write_all(&frame).await?;
    Ok((FrameReader::new(read, FrameLimits::default()), write))
}

/// Whether the home ends the connection within `within`.
async fn ends<R: tokio::io::AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue, // an announcement before the end
            Ok(Ok(None) | Err(_)) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_is_who_its_certificate_says_and_only_while_registered() {
    let home = start_home().await;
    home.spu.apply_mirrors(registered(&["edge1", "edge2"]));
    home.lead(
        1,
        &[
            (TOPIC, 0, home_role("edge1", false)),
            (TOPIC, 1, home_role("edge2", false)),
        ],
    );
    let metrics = home.spu.metrics().clone();
    let ca = home_ca(&home);
    let edge1 = issue(&home, "edge1");
    let long = Duration::from_secs(20);

    // Plaintext StartMirror: refused, whatever it claims.
    let mut plain = handshake(&home, "edge2", "metrics-0").await;
    closed_by_server(&mut plain).await;
    let plaintext = "plaintext mirroring is refused: TLS with a client certificate is required";
    assert_eq!(metrics.mirror_refused_count(plaintext), 1);

    // Edge1's certificate claiming edge2: refused, and a sync sent anyway
    // stores nothing in edge2's partition.
    let (mut frames, mut write) = tls_start(&home, &ca, &edge1, "edge2", "metrics-0")
        .await
        .unwrap();
    let _ = write
        .write_all(&sync_frame(mg_testkit::batch_bytes(&[&[b"forged"]]), 1))
        .await;
    assert!(ends(&mut frames, long).await);
    assert_eq!(
        metrics.mirror_refused_count("the certificate names another remote"),
        1
    );
    assert_eq!(home.leo(TOPIC, 1), 0);
    assert!(
        home.stored(TOPIC, 1).is_empty(),
        "not a byte of edge2's partition"
    );

    // Its own id, but a replica no partition mirrors for it: refused.
    let (mut frames, _write) = tls_start(&home, &ca, &edge1, "edge1", "other-0")
        .await
        .unwrap();
    assert!(ends(&mut frames, long).await);
    assert_eq!(
        metrics.mirror_refused_count("no partition here mirrors that remote replica"),
        1
    );

    // Another CA's certificate, an expired one: the handshake fails.
    let other = mg_pki::Ca::generate("other").unwrap();
    let foreign = other
        .issue_client("edge1", mg_pki::DEFAULT_VALIDITY)
        .unwrap();
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let expired = ca
        .issue_client_between("edge1", now - 3 * day, now - day)
        .unwrap();
    for issued in [&foreign, &expired] {
        let started = tls_start(&home, &ca, issued, "edge1", "metrics-0").await;
        if let Ok((mut frames, _write)) = started {
            // TLS 1.3: the client may finish before the server refuses.
            assert!(ends(&mut frames, long).await);
        }
    }
    eventually("both handshakes counted as refused", || {
        metrics.mirror_refused_count("TLS handshake failed") == 2
    })
    .await;

    // A TLS connection is for mirror traffic only.
    let client = mg_transport::tls::TlsClient::from_pem(
        ca.cert_pem().as_bytes(),
        edge1.cert_pem.as_bytes(),
        edge1.key_pem.as_bytes(),
    )
    .unwrap();
    let stream = client
        .connect(&home.addr(), &format!("5001.{DOMAIN}"))
        .await
        .unwrap();
    let (read, mut write) = tokio::io::split(stream);
    write
        .write_all(&mg_testkit::one_record_request(TOPIC, 0, 3))
        .await
        .unwrap();
    assert!(ends(&mut FrameReader::new(read, FrameLimits::default()), long).await);
    assert_eq!(metrics.mirror_refused_count("not mirror traffic"), 1);

    // Edge1 as itself: in, and its record lands in its own partition only.
    let (mut frames, mut write) = tls_start(&home, &ca, &edge1, "edge1", "metrics-0")
        .await
        .unwrap();
    let first = frames.next().await.unwrap().unwrap();
    let (header, _) = RequestHeader::parse(&first).unwrap();
    assert_eq!(header.api_key, HOME_UPDATE_OFFSET);
    write
        .write_all(&sync_frame(mg_testkit::batch_bytes(&[&[b"mine"]]), 1))
        .await
        .unwrap();
    eventually("edge1's record at home", || home.leo(TOPIC, 0) == 1).await;
    assert_eq!(home.leo(TOPIC, 1), 0);

    // A certificate the CA signed for edge1 but the home never recorded
    // is refused.
    let unrecorded = ca.issue_client("edge1", mg_pki::DEFAULT_VALIDITY).unwrap();
    let (mut refused, _w) = tls_start(&home, &ca, &unrecorded, "edge1", "metrics-0")
        .await
        .unwrap();
    assert!(ends(&mut refused, long).await);
    let rotated = "the certificate was rotated out, or never issued to this remote";
    assert_eq!(metrics.mirror_refused_count(rotated), 1);

    // Rotation: a new certificate, and the old one is done with, the live
    // link it carries included.
    let newer = issue(&home, "edge1");
    let tls = home.dir.path().join("tls");
    mg_pki::record_issued(&tls, "edge1", &newer.fingerprint, true).unwrap();
    assert!(
        ends(&mut frames, Duration::from_secs(5)).await,
        "the link of the rotated-out certificate ends"
    );
    let (mut old, _w) = tls_start(&home, &ca, &edge1, "edge1", "metrics-0")
        .await
        .unwrap();
    assert!(
        ends(&mut old, long).await,
        "the rotated-out certificate is refused"
    );
    assert_eq!(metrics.mirror_refused_count(rotated), 2);

    // Unregistering edge1 ends its live link (now with the new certificate)
    // within a second; the certificate, still chaining to the CA and
    // recorded, is refused from then on.
    let (mut frames, _write) = tls_start(&home, &ca, &newer, "edge1", "metrics-0")
        .await
        .unwrap();
    let first = frames.next().await.unwrap().unwrap();
    assert_eq!(
        RequestHeader::parse(&first).unwrap().0.api_key,
        HOME_UPDATE_OFFSET
    );
    home.spu.apply_mirrors(registered(&["edge2"]));
    assert!(
        ends(&mut frames, Duration::from_secs(1)).await,
        "the link ends within a second"
    );
    let (mut frames, _write) = tls_start(&home, &ca, &newer, "edge1", "metrics-0")
        .await
        .unwrap();
    assert!(ends(&mut frames, long).await);
    assert_eq!(metrics.mirror_refused_count("unknown remote"), 1);

    // Our own produce to the mirror partition is still refused with 11003.
    assert_eq!(produce(&home, TOPIC).await, 11003);
}
