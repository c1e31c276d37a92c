//! The SC drives a real SPU's roles over the control plane, on loopback:
//! role changes apply to the next produce without an SPU restart, the SPU
//! keeps serving (fail closed) while the SC is down, and a restarted SC's
//! full sync removes partitions that vanished.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use mg_sc::model::PartitionMirror;
use mg_sc::{Cluster, serve_private};
use mg_spu::{ControlState, RunningSpu, Spu, SpuConfig};
use tokio::sync::watch;

const SPU: i32 = 5001;

async fn start_spu(dir: &std::path::Path, sc: SocketAddr) -> RunningSpu {
    let mut config = SpuConfig::new(SPU, dir.join("spu"));
    config.sc = Some(sc);
    Spu::new(config).unwrap().start().await.unwrap()
}

/// Waits (on events, never a sleep) until the SPU's control state satisfies `ok`.
async fn until(
    control: &mut watch::Receiver<ControlState>,
    what: &str,
    ok: impl Fn(&ControlState) -> bool,
) -> ControlState {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        control.wait_for(|s| ok(s)).await.map(|s| s.clone())
    })
    .await;
    match waited {
        Ok(state) => state.expect("the SPU is running"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *control.borrow()),
    }
}

/// Produces one record to `topic` partition 0; returns the entry's error code.
async fn produce(spu: &RunningSpu, topic: &str) -> i16 {
    let (addr, topic) = (spu.addr().to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, &topic, 0))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sc_drives_spu_roles_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(dir.path());
    cluster
        .register_spu(SPU, "127.0.0.1:0", "127.0.0.1:0")
        .unwrap();
    cluster.create_topic("plain", 1).unwrap();
    cluster.register_remote("edge1").unwrap();
    cluster
        .create_mirror_topic("mirrored", &["edge1".to_string()], false)
        .unwrap();
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    let sc_addr = private.addr();

    let spu = start_spu(dir.path(), sc_addr).await;
    let mut control = spu.control();
    until(&mut control, "the first sync", |s| {
        s.connected && s.updates >= 1
    })
    .await;
    assert_eq!(produce(&spu, "plain").await, 0);
    assert_eq!(produce(&spu, "mirrored").await, 11003);

    // Flip the home partition to home-to-remote: the very next produce is accepted.
    let updates = control.borrow().updates;
    let source = |source| {
        Some(PartitionMirror::Home {
            remote_cluster: "edge1".into(),
            remote_replica: "mirrored-0".into(),
            source,
        })
    };
    cluster
        .set_partition_mirror("mirrored", 0, source(true))
        .unwrap();
    until(&mut control, "the flip", |s| s.updates > updates).await;
    assert_eq!(produce(&spu, "mirrored").await, 0);
    let updates = control.borrow().updates;
    cluster
        .set_partition_mirror("mirrored", 0, source(false))
        .unwrap();
    until(&mut control, "the flip back", |s| s.updates > updates).await;
    assert_eq!(produce(&spu, "mirrored").await, 11003);

    // The SC's status view follows the SPU's reports (sent every 400 ms).
    let mut reports = cluster.subscribe_status();
    let reported = tokio::time::timeout(Duration::from_secs(20), async {
        while cluster.offsets("plain", 0).map(|(_, leo, _)| leo) != Some(1) {
            reports.changed().await.unwrap();
        }
    })
    .await;
    assert!(reported.is_ok(), "the SPU reported the log end of plain-0");

    // The SC goes away: the SPU keeps serving its last table, failing closed.
    private.shutdown().await;
    until(&mut control, "the disconnect", |s| !s.connected).await;
    assert_eq!(produce(&spu, "plain").await, 0);
    assert_eq!(produce(&spu, "mirrored").await, 11003);
    assert_eq!(produce(&spu, "never-created").await, 6);

    // A new SC over the same data, where "plain" was deleted meanwhile.
    drop(cluster);
    let cluster = store.open(dir.path());
    cluster.delete_topic("plain").unwrap();
    let sessions = control.borrow().sessions;
    let private = serve_private(sc_addr, cluster.clone()).await.unwrap();
    let state = until(&mut control, "the reconnect and full sync", |s| {
        s.sessions > sessions && s.connected && s.updates > 0
    })
    .await;
    assert!(state.sessions >= 2);
    // The full sync removed the vanished partition and kept the rest.
    let removed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if spu.roles().snapshot().get("plain", 0).is_none() {
                return;
            }
            control.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        removed.is_ok(),
        "full sync did not remove the vanished partition"
    );
    assert_eq!(produce(&spu, "plain").await, 6);
    assert_eq!(produce(&spu, "mirrored").await, 11003);

    private.shutdown().await;
    spu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_spu_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(dir.path());
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    let spu = start_spu(dir.path(), private.addr()).await;
    let mut control = spu.control();
    let state = until(&mut control, "a refusal", |s| s.last_error.is_some()).await;
    assert!(
        state.last_error.unwrap().contains("not registered"),
        "refusal names the reason"
    );
    assert_eq!(state.sessions, 0);
    assert_eq!(produce(&spu, "anything").await, 6);
    private.shutdown().await;
    spu.shutdown().await;
}

#[tokio::test]
async fn metadata_survives_a_restart_and_an_unreadable_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    {
        let cluster = store.open(dir.path());
        cluster
            .register_spu(SPU, "127.0.0.1:9005", "127.0.0.1:9006")
            .unwrap();
        cluster.create_topic("orders", 3).unwrap();
        cluster.register_remote("edge1").unwrap();
        cluster
            .create_mirror_topic("m", &["edge1".into()], true)
            .unwrap();
        assert!(matches!(
            cluster.create_topic("orders", 1),
            Err(mg_sc::AdminError::Exists { .. })
        ));
        assert!(
            cluster
                .create_mirror_topic("n", &["nobody".into()], false)
                .is_err()
        );
    }
    let cluster = store.open(dir.path());
    assert_eq!(cluster.topics().len(), 2);
    assert_eq!(cluster.partitions().len(), 4);
    let m = cluster
        .partitions()
        .into_iter()
        .find(|p| p.topic == "m")
        .unwrap();
    assert!(matches!(
        m.mirror,
        Some(PartitionMirror::Home { source: true, .. })
    ));
    drop(cluster);
    if store.etcd.is_some() {
        return; // an unreadable key: tests/etcd.rs
    }

    let bad = dir.path().join("metadata/topic/orders.json");
    std::fs::write(&bad, b"{ not json").unwrap();
    let err = Cluster::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("orders.json"), "{err}");
}

/// A crash between writing a temporary file and renaming it leaves the file
/// behind. The next start removes those of processes that are gone, keeps
/// those of a live writer, and loads the objects they were replacing.
#[test]
fn leftovers_of_crashed_writes_are_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cluster = Cluster::open(dir.path()).unwrap();
        cluster
            .register_spu(SPU, "127.0.0.1:9005", "127.0.0.1:9006")
            .unwrap();
        cluster.create_topic("orders", 1).unwrap();
    }
    let topics = dir.path().join("metadata/topic");
    // No process has a pid this large (the kernel's limit is 2^22).
    let dead = topics.join(".orders.json.4294967295.tmp");
    let live = topics.join(format!(".orders.json.{}.tmp", std::process::id()));
    let top = dir.path().join(".cluster.json.4294967295.tmp");
    for path in [&dead, &live, &top] {
        std::fs::write(path, b"{ half a wri").unwrap();
    }

    let cluster = Cluster::open(dir.path()).unwrap();
    assert_eq!(cluster.topics().len(), 1);
    assert!(!dead.exists(), "a dead writer's temporary file is removed");
    assert!(!top.exists(), "also in the data dir itself");
    assert!(live.exists(), "a live writer's temporary file is kept");
}

/// An SPU that reconnects can have its new session counted before the old
/// one ends: it stays online until its last session is gone.
#[test]
fn an_spu_is_online_while_any_of_its_sessions_is() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::open(dir.path()).unwrap();
    cluster
        .register_spu(SPU, "127.0.0.1:9005", "127.0.0.1:9006")
        .unwrap();
    assert!(!cluster.is_online(SPU));
    cluster.set_online(SPU, true);
    cluster.set_online(SPU, true); // the reconnect, before the old one ends
    cluster.set_online(SPU, false); // the old session ends
    assert!(cluster.is_online(SPU));
    cluster.set_online(SPU, false);
    assert!(!cluster.is_online(SPU));
    cluster.set_online(SPU, false); // an extra end never goes below zero
    cluster.set_online(SPU, true);
    assert!(cluster.is_online(SPU));
}
