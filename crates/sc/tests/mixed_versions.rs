//! An SPU of the old protocol (registering at version 0, as Fluvio's SPUs
//! and older ones do) next to a new one, on one SC. The old SPU gets roles
//! without direction flags and must never fail open: it refuses produce to a
//! remote target (withheld: not-leader) and to a home source (a home
//! partition without the flag refuses anyway). The new SPU gets v18 roles
//! and the exact verdicts.

mod common;

use std::time::Duration;

use mg_sc::model::PartitionMirror;
use mg_sc::serve_private;
use mg_spu::{RunningSpu, Spu, SpuConfig};

async fn produce(spu: &RunningSpu, topic: &str, partition: u32) -> i16 {
    let (addr, topic) = (spu.addr().to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, &topic, partition))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_spu_never_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(&dir.path().join("sc"));
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.register_spu(5002, "127.0.0.1:2", "").unwrap();
    // Two partitions per topic: one led by each SPU.
    for topic in ["from-home", "to-remote", "plain"] {
        cluster.create_topic(topic, 2).unwrap();
    }
    let remote_target = PartitionMirror::Remote {
        home_cluster: "home".into(),
        home_spu_key: "home-5001".into(),
        home_spu_id: 5001,
        home_spu_endpoint: "127.0.0.1:9005".into(),
        target: true,
    };
    let home_source = PartitionMirror::Home {
        remote_cluster: "edge1".into(),
        remote_replica: "to-remote-0".into(),
        source: true,
    };
    for p in 0..2 {
        cluster
            .set_partition_mirror("from-home", p, Some(remote_target.clone()))
            .unwrap();
        cluster
            .set_partition_mirror("to-remote", p, Some(home_source.clone()))
            .unwrap();
    }
    let leader = |topic: &str, spu: i32| {
        cluster
            .partitions()
            .into_iter()
            .find(|p| p.topic == topic && p.leader == spu)
            .map(|p| p.partition)
            .unwrap()
    };

    let start = |id: i32, register_version: i16| {
        let mut config = SpuConfig::new(id, dir.path().join(format!("spu-{id}")));
        config.sc = Some(private.addr());
        config.register_version = register_version;
        async move { Spu::new(config).unwrap().start().await.unwrap() }
    };
    let new = start(5001, 1).await;
    let old = start(5002, 0).await;
    for spu in [&new, &old] {
        let mut control = spu.control();
        tokio::time::timeout(
            Duration::from_secs(20),
            control.wait_for(|s| s.connected && s.updates >= 1),
        )
        .await
        .expect("the SPU gets its roles")
        .unwrap();
    }
    assert_eq!(new.control().borrow().replica_version, Some(18));
    assert_eq!(old.control().borrow().replica_version, Some(17));

    // The new SPU: exact verdicts in both directions.
    assert_eq!(
        produce(&new, "from-home", leader("from-home", 5001)).await,
        11006
    );
    assert_eq!(
        produce(&new, "to-remote", leader("to-remote", 5001)).await,
        0
    );
    assert_eq!(produce(&new, "plain", leader("plain", 5001)).await, 0);

    // The old SPU: never accepts where the flags would have said no.
    assert_eq!(
        produce(&old, "from-home", leader("from-home", 5002)).await,
        6,
        "a remote target is withheld"
    );
    assert_eq!(
        produce(&old, "to-remote", leader("to-remote", 5002)).await,
        11003,
        "a home without its flag refuses"
    );
    assert_eq!(
        produce(&old, "plain", leader("plain", 5002)).await,
        0,
        "plain partitions are unaffected"
    );

    new.shutdown().await;
    old.shutdown().await;
    private.shutdown().await;
}
