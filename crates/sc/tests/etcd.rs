//! The SC's metadata on a real etcd (started here on loopback, stopped by
//! its pid): a change commits whole or not at all, an unreadable key is
//! named as an unreadable file is, and with etcd gone a change fails
//! cleanly while the SC keeps answering from memory. (Every other SC test
//! also runs on etcd: `MG_TEST_STORE=etcd`, see `make test`.)

use etcd_client::{Client, GetOptions};
use mg_sc::Cluster;
use mg_sc::etcd::EtcdConfig;
use mg_sc::persist::StoreConfig;
use mg_testkit::etcd::Etcd;

fn config(etcd: &Etcd) -> StoreConfig {
    StoreConfig::Etcd(EtcdConfig::parse(&etcd.url(), "/mirror-guard/t1").unwrap())
}

async fn keys(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    let found = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    found
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect()
}

/// etcd refuses a transaction of more operations than it allows: a topic of
/// 20 partitions (21 writes) is refused whole, nothing of it stored or
/// shown, while one of 3 (4 writes) commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_commits_whole_or_not_at_all() {
    let etcd = Etcd::cluster_with(1, &["--max-txn-ops", "8"]);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::open_with(dir.path(), &config(&etcd)).unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    let err = cluster.create_topic("big", 20).unwrap_err().to_string();
    assert!(
        err.contains("etcd") && err.contains("too many operations"),
        "{err}"
    );
    assert!(cluster.topics().is_empty() && cluster.partitions().is_empty());
    assert!(
        keys(&etcd, "/mirror-guard/t1/metadata/partition/")
            .await
            .is_empty()
    );
    cluster.create_topic("small", 3).unwrap();
    let stored = keys(&etcd, "/mirror-guard/t1/metadata/").await;
    assert_eq!(
        stored,
        vec![
            "/mirror-guard/t1/metadata/partition/small-0",
            "/mirror-guard/t1/metadata/partition/small-1",
            "/mirror-guard/t1/metadata/partition/small-2",
            "/mirror-guard/t1/metadata/spu/5001",
            "/mirror-guard/t1/metadata/topic/small",
        ]
    );
    drop(cluster);
    let again = Cluster::open_with(dir.path(), &config(&etcd)).unwrap();
    assert_eq!(again.topics().len(), 1);
    assert_eq!(again.partitions().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_key_is_named() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::open_with(dir.path(), &config(&etcd)).unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.create_topic("orders", 1).unwrap();
    drop(cluster);
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    client
        .put("/mirror-guard/t1/metadata/topic/orders", "{ not json", None)
        .await
        .unwrap();
    let err = Cluster::open_with(dir.path(), &config(&etcd))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/mirror-guard/t1/metadata/topic/orders: "),
        "{err}"
    );
    // A newer schema is refused the same way, named.
    client
        .put(
            "/mirror-guard/t1/metadata/topic/orders",
            r#"{"schema": 9, "kind": "topic", "name": "orders", "spec": {}}"#,
            None,
        )
        .await
        .unwrap();
    let err = Cluster::open_with(dir.path(), &config(&etcd))
        .unwrap_err()
        .to_string();
    assert!(err.contains("orders") && err.contains("newer"), "{err}");
}

/// etcd gone: a change fails with a clear error and is not applied; what
/// the SC holds in memory is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_gone_a_change_fails_cleanly() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::open_with(dir.path(), &config(&etcd)).unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.create_topic("orders", 1).unwrap();
    etcd.kill(0);
    let err = cluster.create_topic("later", 1).unwrap_err().to_string();
    assert!(err.contains("etcd"), "{err}");
    let names: Vec<String> = cluster.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["orders".to_string()]);
    // And opening a cluster on it fails, naming where it looked.
    let err = Cluster::open_with(dir.path(), &config(&etcd))
        .unwrap_err()
        .to_string();
    assert!(err.contains("etcd"), "{err}");
}

/// Two SCs on one etcd prefix: one is elected, the other stands by until
/// the leader's lease is gone. A leader whose lease expired (paused past
/// it, say) writes nothing more: every commit is conditioned on the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_elected_sc_writes_and_a_fenced_one_cannot() {
    use mg_sc::etcd::EtcdStore;
    use mg_sc::persist::Persistence;
    let etcd = Etcd::start();
    let cfg = EtcdConfig::parse(&etcd.url(), "/mirror-guard/ha").unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let a = EtcdStore::open(cfg.clone()).unwrap();
    let mut a_lost = tokio::task::spawn_blocking(move || {
        let lost = a.campaign("sc-a").unwrap();
        (a, lost)
    })
    .await
    .unwrap();
    let a = Cluster::open_on(dir_a.path(), Persistence::Etcd(Box::new(a_lost.0))).unwrap();
    a.register_spu(5001, "127.0.0.1:1", "").unwrap();
    a.create_topic("before", 1).unwrap();

    // B stands by while A holds the lease.
    let b_cfg = cfg.clone();
    let standby = tokio::task::spawn_blocking(move || {
        let b = EtcdStore::open(b_cfg).unwrap();
        let lost = b.campaign("sc-b").unwrap();
        (b, lost)
    });
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    let leader = client.get("/mirror-guard/ha/LEADER", None).await.unwrap();
    let leader = leader.kvs().first().unwrap();
    assert_eq!(leader.value_str().unwrap(), "sc-a");
    assert!(!standby.is_finished());

    // A "pauses" past its lease: the lease is gone as if it had expired.
    client.lease_revoke(leader.lease()).await.unwrap();
    let (b, _b_lost) = tokio::time::timeout(std::time::Duration::from_secs(20), standby)
        .await
        .expect("the standby is elected once the lease is gone")
        .unwrap();
    let b = Cluster::open_on(dir_b.path(), Persistence::Etcd(Box::new(b))).unwrap();
    assert_eq!(b.topics().len(), 1, "the new leader has what was committed");
    b.create_topic("after", 1).unwrap();

    // A wakes: its writes are refused, and it hears it lost the leadership.
    let err = a.create_topic("stale", 1).unwrap_err().to_string();
    assert!(err.contains("no longer holds the leadership"), "{err}");
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        a_lost.1.wait_for(|lost| *lost),
    )
    .await
    .expect("the old leader learns it lost the lease")
    .unwrap();
    drop((a, b));
    let check =
        Cluster::open_with(tempfile::tempdir().unwrap().path(), &StoreConfig::Etcd(cfg)).unwrap();
    let mut names: Vec<String> = check.topics().into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, vec!["after".to_string(), "before".to_string()]);
}

/// One member of three down: an SC still opens (the first endpoint it is
/// given is the dead one), commits and campaigns. With two of three gone
/// there is no quorum: a change fails cleanly and nothing of it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sc_opens_and_commits_with_a_member_down() {
    let mut etcd = Etcd::cluster(3);
    let endpoints = etcd.endpoints();
    etcd.kill(0);
    let url = format!("etcd://{}", endpoints.join(","));
    let config = StoreConfig::Etcd(EtcdConfig::parse(&url, "/mirror-guard/down").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let opened = {
        let (dir, config) = (dir.path().to_path_buf(), config.clone());
        tokio::task::spawn_blocking(move || Cluster::open_with(&dir, &config))
            .await
            .unwrap()
    };
    let cluster = opened.expect("opens with the first member down");
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.create_topic("orders", 2).unwrap();
    // Elected, too: the campaign goes round the dead member.
    let store =
        mg_sc::etcd::EtcdStore::open(EtcdConfig::parse(&url, "/mirror-guard/down").unwrap())
            .unwrap();
    let store = tokio::task::spawn_blocking(move || {
        store.campaign("sc-a").unwrap();
        store
    })
    .await
    .unwrap();
    assert_eq!(store.leader().unwrap().as_deref(), Some("sc-a"));

    // Two of three down: no quorum; the change fails, naming who was tried.
    etcd.kill(1);
    let err = cluster.create_topic("later", 1).unwrap_err().to_string();
    assert!(err.contains("etcd"), "{err}");
    let names: Vec<String> = cluster.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["orders".to_string()], "nothing half-applied");
}

/// The version of `key` (how often it was written since it was created).
async fn version(etcd: &Etcd, key: &str) -> i64 {
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    let found = client.get(key, None).await.unwrap();
    found.kvs().first().map_or(0, |kv| kv.version())
}

/// A commit that etcd applied but whose answer was lost (here: a relay in
/// front of the member throws the member's replies away) is tried at the
/// next member, recognised there by its token and reported committed: the
/// caller is told the truth, and the change is applied once. (Before, the
/// SC waited for the lost answer and failed the change, though etcd held
/// it: an etcd member killed mid-call does this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_applied_once() {
    let etcd = Etcd::start();
    let member = etcd.endpoints()[0].clone();
    let relay = mg_testkit::relay::Relay::start(&member);
    let url = format!("etcd://{},{member}", relay.addr());
    let config = StoreConfig::Etcd(EtcdConfig::parse(&url, "/mirror-guard/lost").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cluster = tokio::task::block_in_place(|| {
        let cluster = Cluster::open_with(dir.path(), &config).unwrap();
        cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
        relay.drop_replies();
        cluster.create_topic("orders", 1).map(|()| cluster)
    })
    .expect("the commit is known to be applied");
    let names: Vec<String> = cluster.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["orders".to_string()]);
    for key in ["topic/orders", "partition/orders-0"] {
        let key = format!("/mirror-guard/lost/metadata/{key}");
        assert_eq!(version(&etcd, &key).await, 1, "{key} written once");
    }
    // And the next change commits as usual, at the member that answers.
    tokio::task::block_in_place(|| cluster.create_topic("later", 1)).unwrap();
}

/// No member can say whether a commit was applied (every reply is lost):
/// the change fails as "may or may not have been applied", the SC gives up
/// its leadership at once (its memory may lack what etcd holds), its lease
/// runs out for a standby to load what etcd holds, and the change, applied
/// by the first try, is applied once: the later tries fail their compare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_unknown_outcome_gives_up_the_leadership() {
    use mg_sc::etcd::EtcdStore;
    use mg_sc::persist::Persistence;
    let etcd = Etcd::start();
    let member = etcd.endpoints()[0].clone();
    let relays = [
        mg_testkit::relay::Relay::start(&member),
        mg_testkit::relay::Relay::start(&member),
    ];
    let url = format!("etcd://{},{}", relays[0].addr(), relays[1].addr());
    let cfg = EtcdConfig::parse(&url, "/mirror-guard/doubt").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, mut lost) = tokio::task::block_in_place(|| {
        let store = EtcdStore::open(cfg).unwrap();
        let lost = store.campaign("sc-a").unwrap();
        let cluster = Cluster::open_on(dir.path(), Persistence::Etcd(Box::new(store))).unwrap();
        (cluster, lost)
    });
    tokio::task::block_in_place(|| cluster.register_spu(5001, "127.0.0.1:1", "")).unwrap();
    assert!(!*lost.borrow());
    for relay in &relays {
        relay.drop_replies();
    }
    let err = tokio::task::block_in_place(|| cluster.create_topic("orders", 1)).unwrap_err();
    assert!(err.to_string().contains("may or may not"), "{err}");
    assert!(*lost.borrow_and_update(), "the SC gave its leadership up");
    assert!(cluster.topics().is_empty());
    // The lease runs out (the revoke could not get through either).
    let mut client = Client::connect(etcd.endpoints(), None).await.unwrap();
    let key = "/mirror-guard/doubt/LEADER";
    let held = client.get(key, None).await.unwrap();
    let gone = async {
        if held.kvs().is_empty() {
            return;
        }
        // Watched from just after the read: the delete cannot slip between.
        let from = held.header().unwrap().revision() + 1;
        let options = etcd_client::WatchOptions::new().with_start_revision(from);
        let mut events = client.watch(key, Some(options)).await.unwrap();
        while let Some(answer) = events.message().await.unwrap() {
            if answer
                .events()
                .iter()
                .any(|e| e.event_type() == etcd_client::EventType::Delete)
            {
                return;
            }
        }
        panic!("the watch ended");
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), gone)
        .await
        .expect("the leader key goes with the lease");
    assert_eq!(
        version(&etcd, "/mirror-guard/doubt/metadata/topic/orders").await,
        1
    );
}
