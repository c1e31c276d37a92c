//! A partition's life on the SPU as the SC drives it, on loopback: a topic
//! deleted and created again starts empty at offset 0 (its records are gone
//! from the SPU's disk before the SC forgets it), also when its SPU was
//! away meanwhile; partitions with no records are reported to the SC at
//! once; partitions the SC does not know are set aside, never served.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mg_sc::{Cluster, serve_private};
use mg_spu::{ControlState, RunningSpu, Spu, SpuConfig};
use tokio::sync::watch;

const SPU: i32 = 5001;

async fn start_spu(dir: &Path, sc: SocketAddr) -> RunningSpu {
    let mut config = SpuConfig::new(SPU, dir.join("spu"));
    config.sc = Some(sc);
    Spu::new(config).unwrap().start().await.unwrap()
}

async fn until(
    control: &mut watch::Receiver<ControlState>,
    what: &str,
    ok: impl Fn(&ControlState) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(20), control.wait_for(|s| ok(s)))
        .await
        .map(|state| state.is_ok());
    assert!(
        matches!(waited, Ok(true)),
        "timed out waiting for {what}: {:?}",
        *control.borrow()
    );
}

/// Waits until the SC has heard `topic`-0's offsets satisfy `ok`.
async fn until_reported(cluster: &Cluster, topic: &str, ok: impl Fn((i64, i64, i64)) -> bool) {
    let mut reports = cluster.subscribe_status();
    let reported = tokio::time::timeout(Duration::from_secs(20), async {
        while !cluster.offsets(topic, 0).is_some_and(&ok) {
            reports.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        reported.is_ok(),
        "the SPU did not report {topic}-0 as expected: {:?}",
        cluster.offsets(topic, 0)
    );
}

/// Waits until the SC has forgotten a deleted topic: every leader of its
/// partitions confirmed that their records are gone.
async fn until_forgotten(cluster: &Cluster, topic: &str) {
    let mut changes = cluster.subscribe();
    let forgotten = tokio::time::timeout(Duration::from_secs(20), async {
        while cluster.has_topic(topic) {
            changes.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        forgotten.is_ok(),
        "the SC still holds {topic} as being deleted"
    );
}

/// Produces one record to `topic` once the SPU leads it: retried after each
/// push the SPU applies (its control state changes with each), until the
/// answer is no longer NotLeader. Returns (code, base offset).
async fn produce_when_led(
    spu: &RunningSpu,
    control: &mut watch::Receiver<ControlState>,
    topic: &str,
) -> (i16, i64) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            control.borrow_and_update();
            let answer = produce(spu, topic).await;
            if answer.0 != 6 {
                return answer;
            }
            control.changed().await.unwrap();
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{topic} was never led"))
}

/// Produces one record; returns (code, base offset).
async fn produce(spu: &RunningSpu, topic: &str) -> (i16, i64) {
    let (addr, topic) = (spu.addr().to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || mg_testkit::produce_answer(&addr, &topic, 0))
        .await
        .unwrap()
}

/// An SPU started against `private`, once its first full sync is applied.
async fn synced_spu(
    dir: &Path,
    private: &mg_sc::RunningPrivate,
) -> (RunningSpu, watch::Receiver<ControlState>) {
    let spu = start_spu(dir, private.addr()).await;
    let mut control = spu.control();
    until(&mut control, "the first sync", |s| {
        s.connected && s.updates >= 1
    })
    .await;
    (spu, control)
}

async fn sc(store: &common::TestStore, dir: &Path) -> (Arc<Cluster>, mg_sc::RunningPrivate) {
    let cluster = store.open(dir);
    cluster
        .register_spu(SPU, "127.0.0.1:0", "127.0.0.1:0")
        .unwrap();
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    (cluster, private)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_created_again_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let (cluster, private) = sc(&store, dir.path()).await;
    let (spu, mut control) = synced_spu(dir.path(), &private).await;

    cluster.create_topic("events", 1).unwrap();
    assert_eq!(produce_when_led(&spu, &mut control, "events").await, (0, 0));
    for expected in 1..25 {
        assert_eq!(produce(&spu, "events").await, (0, expected));
    }
    let partition_dir = dir.path().join("spu").join("events-0");
    assert!(partition_dir.exists());

    cluster.delete_topic("events").unwrap();
    until_forgotten(&cluster, "events").await;
    assert!(
        !partition_dir.exists(),
        "the SPU removed the partition's records before it confirmed"
    );
    assert_eq!(produce(&spu, "events").await.0, 6, "no longer led");

    cluster.create_topic("events", 1).unwrap();
    assert_eq!(
        produce_when_led(&spu, &mut control, "events").await,
        (0, 0),
        "the new topic starts at offset 0"
    );
    until_reported(&cluster, "events", |(hw, leo, _)| hw == 1 && leo == 1).await;

    spu.shutdown().await;
    private.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_partitions_are_reported_as_soon_as_they_are_led() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let (cluster, private) = sc(&store, dir.path()).await;
    let (spu, _control) = synced_spu(dir.path(), &private).await;

    // Created after the session's first sync, and never written.
    cluster.create_topic("quiet", 2).unwrap();
    for partition in 0..2 {
        let mut reports = cluster.subscribe_status();
        let reported = tokio::time::timeout(Duration::from_secs(20), async {
            while cluster.offsets("quiet", partition) != Some((0, 0, 0)) {
                reports.changed().await.unwrap();
            }
        })
        .await;
        assert!(reported.is_ok(), "quiet-{partition} was never reported");
    }
    spu.shutdown().await;
    private.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_and_created_again_while_its_spu_was_away_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let (cluster, private) = sc(&store, dir.path()).await;
    cluster.create_topic("kept", 1).unwrap();
    cluster.create_topic("gone", 1).unwrap();
    let (spu, _control) = synced_spu(dir.path(), &private).await;
    assert_eq!(produce(&spu, "kept").await, (0, 0));
    for expected in 0..3 {
        assert_eq!(produce(&spu, "gone").await, (0, expected));
    }
    spu.shutdown().await;

    // While the SPU is down, "gone" is deleted: the SC keeps it as being
    // deleted (hidden, its name taken) until its leader confirms.
    cluster.delete_topic("gone").unwrap();
    assert!(cluster.topics().iter().all(|t| t.name != "gone"));
    assert!(matches!(
        cluster.create_topic("gone", 1),
        Err(mg_sc::ApiError::BeingDeleted(_))
    ));
    let (spu, mut control) = synced_spu(dir.path(), &private).await;
    until_forgotten(&cluster, "gone").await;
    assert!(!dir.path().join("spu").join("gone-0").exists());
    cluster.create_topic("gone", 1).unwrap();
    // Led again once the SPU has applied the new role: it starts at 0.
    let answer = produce_when_led(&spu, &mut control, "gone").await;
    assert_eq!(answer, (0, 0), "the new topic starts at offset 0");
    assert_eq!(
        produce(&spu, "kept").await,
        (0, 1),
        "kept keeps its records"
    );
    spu.shutdown().await;
    private.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_the_sc_does_not_know_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let (cluster, private) = sc(&store, dir.path()).await;
    cluster.create_topic("kept", 1).unwrap();
    // A partition left on the SPU's disk that the SC never heard of.
    let spu_dir = dir.path().join("spu");
    let stray = mg_storage::Store::new(&spu_dir, mg_storage::LogConfig::default()).unwrap();
    let records = mg_testkit::batch_bytes(&[&[b"old"]]);
    stray
        .partition("stray", 0)
        .unwrap()
        .lock()
        .append(&records)
        .unwrap();
    drop(stray);

    let (spu, _control) = synced_spu(dir.path(), &private).await;
    assert_eq!(produce(&spu, "kept").await, (0, 0));
    assert!(!spu_dir.join("stray-0").exists());
    let orphaned: Vec<String> = std::fs::read_dir(spu_dir.join("orphaned"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    assert!(orphaned[0].starts_with("stray-0."), "{orphaned:?}");
    spu.shutdown().await;
    private.shutdown().await;
}
