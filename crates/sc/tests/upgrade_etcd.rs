//! Upgrading metadata kept on a real etcd (started here on loopback,
//! stopped by its pid), with the schema-1 fixture loaded as an SC would
//! have stored it: the check reads every key and writes nothing; upgrade
//! writes a new generation and switches CURRENT in one guarded
//! transaction; rollback restores the old keys byte for byte; finalize
//! prunes. No step runs while an SC leads the prefix, and an SC still on
//! the old generation cannot write into it once CURRENT moved.

use std::path::PathBuf;

use mg_sc::Cluster;
use mg_sc::etcd::{EtcdConfig, EtcdStore};
use mg_sc::persist::StoreConfig;
use mg_sc::store::LoadError;
use mg_sc::upgrade::{self, Generations, Status, Steps, Upgraded};
use mg_testkit::etcd::Etcd;

const PREFIX: &str = "/mirror-guard/up";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metadata-v1/sc")
}

fn config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig::parse(&etcd.url(), PREFIX).unwrap()
}

fn generations(etcd: &Etcd) -> Generations {
    Generations::Etcd(Box::new(EtcdStore::open(config(etcd)).unwrap()))
}

fn v1_on_etcd() -> Etcd {
    let etcd = Etcd::start();
    etcd.load_files(PREFIX, &fixture());
    etcd
}

fn open_cluster(etcd: &Etcd, dir: &std::path::Path) -> Result<Cluster, LoadError> {
    Cluster::open_with(dir, &StoreConfig::Etcd(config(etcd)))
}

#[test]
fn check_upgrade_rollback_finalize_on_etcd() {
    let etcd = v1_on_etcd();
    let dir = tempfile::tempdir().unwrap();
    let original = etcd.snapshot(PREFIX);
    assert_eq!(original.len(), 6, "the fixture's six objects");

    // The check reads every key, and writes none.
    let report = upgrade::check(&generations(&etcd)).unwrap();
    assert_eq!(etcd.snapshot(PREFIX), original, "check wrote something");
    assert_eq!(report.generation, "metadata");
    assert_eq!(report.lines.len(), 6);
    assert!(report.upgradable() && report.needs_migration());
    assert!(
        report
            .lines
            .iter()
            .all(|l| l.path.starts_with(format!("{PREFIX}/metadata/"))),
        "each object named by its key"
    );
    assert!(matches!(
        open_cluster(&etcd, dir.path()),
        Err(LoadError::NeedsMigration { .. })
    ));

    let outcome = upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap();
    assert_eq!(
        outcome,
        Upgraded::Migrated {
            previous: "metadata".into(),
            current: "gen-000001".into(),
            objects: 6
        }
    );
    let after = etcd.snapshot(PREFIX);
    assert_eq!(after[&format!("{PREFIX}/CURRENT")], b"gen-000001");
    assert!(
        String::from_utf8_lossy(&after[&format!("{PREFIX}/UPGRADE")]).contains("pending"),
        "the upgrade recorded with the switch"
    );
    for (key, value) in &original {
        assert_eq!(
            after.get(key),
            Some(value),
            "{key}: the old generation kept"
        );
    }
    let orders =
        String::from_utf8_lossy(&after[&format!("{PREFIX}/gen-000001/topic/orders")]).into_owned();
    assert!(
        orders.contains("billing team") && orders.contains("\"schema\": 2"),
        "migrated, the unknown field carried: {orders}"
    );
    let cluster = open_cluster(&etcd, dir.path()).unwrap();
    assert_eq!(cluster.topics().len(), 2);
    assert_eq!(cluster.partitions().len(), 2);
    drop(cluster);

    // Rollback, in one transaction: the keys are exactly the fixture's again.
    let record = upgrade::rollback(&generations(&etcd)).unwrap();
    assert_eq!(record.current, "gen-000001");
    let mut rolled = etcd.snapshot(PREFIX);
    assert_eq!(
        rolled.remove(&format!("{PREFIX}/CURRENT")).as_deref(),
        Some(&b"metadata"[..]),
        "CURRENT names the first generation again"
    );
    assert_eq!(rolled, original, "rollback restores the old keys exactly");

    // Again, then finalize: the old generation goes only now.
    upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap();
    assert!(
        upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).is_err(),
        "a pending upgrade blocks another"
    );
    upgrade::finalize(&generations(&etcd)).unwrap();
    let finalized = etcd.snapshot(PREFIX);
    assert!(
        !finalized
            .keys()
            .any(|k| k.starts_with(&format!("{PREFIX}/metadata/"))),
        "pruned: {:?}",
        finalized.keys().collect::<Vec<_>>()
    );
    assert!(
        String::from_utf8_lossy(&finalized[&format!("{PREFIX}/UPGRADE")]).contains("finalized")
    );
    let err = upgrade::rollback(&generations(&etcd))
        .unwrap_err()
        .to_string();
    assert!(err.contains("finalized"), "{err}");
    assert_eq!(
        upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap(),
        Upgraded::UpToDate
    );
    assert_eq!(open_cluster(&etcd, dir.path()).unwrap().topics().len(), 2);
}

/// While an SC leads the prefix, nothing of an upgrade runs; an SC that
/// opened the old generation (elected or not) cannot write into it after
/// the switch: its commits are conditioned on CURRENT.
#[test]
fn no_upgrade_under_a_running_sc_and_no_write_into_a_switched_generation() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    // A current cluster on the first generation, then one schema-1 object
    // beside it, so that an upgrade has work to do.
    let cluster = open_cluster(&etcd, dir.path()).unwrap();
    cluster.register_spu(5001, "127.0.0.1:1", "").unwrap();
    cluster.create_topic("before", 1).unwrap();
    drop(cluster);
    let old = std::fs::read(fixture().join("metadata/topic/orders.json")).unwrap();
    etcd.put(&format!("{PREFIX}/metadata/topic/orders"), old);

    let leader = EtcdStore::open(config(&etcd)).unwrap();
    let _lost = leader.campaign("sc-a").unwrap();
    for (what, err) in [
        (
            "upgrade",
            upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap_err(),
        ),
        (
            "rollback",
            upgrade::rollback(&generations(&etcd)).unwrap_err(),
        ),
        (
            "finalize",
            upgrade::finalize(&generations(&etcd)).unwrap_err(),
        ),
    ] {
        let err = err.to_string();
        assert!(
            err.contains("an SC is running") && err.contains("sc-a"),
            "{what}: {err}"
        );
    }
    // A graceful stop resigns: the leader key is gone at once.
    leader.resign().unwrap();
    assert_eq!(
        EtcdStore::open(config(&etcd)).unwrap().leader().unwrap(),
        None
    );

    // An SC on the old generation, not elected (a lone SC, or a stale one).
    let stale = EtcdStore::open(config(&etcd)).unwrap();
    assert_eq!(stale.generation(), "metadata");
    upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap();
    let keys_before = etcd.snapshot(PREFIX);
    let err = stale
        .commit(vec![mg_sc::persist::Write::Delete {
            kind: "topic",
            name: "before".into(),
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer names generation metadata"), "{err}");
    assert_eq!(etcd.snapshot(PREFIX), keys_before, "nothing was written");
}

/// An unreadable key is named in the check; resume with set-aside moves it
/// into the quarantine prefix, and the rest loads.
#[test]
fn an_unreadable_key_is_named_and_can_be_set_aside() {
    let etcd = v1_on_etcd();
    upgrade::upgrade(&generations(&etcd), &mut Steps::default(), |_, _| {}).unwrap();
    let broken = format!("{PREFIX}/gen-000001/topic/orders");
    etcd.put(&broken, "{ not json");
    let report = upgrade::check(&generations(&etcd)).unwrap();
    let line = report
        .lines
        .iter()
        .find(|l| l.path == std::path::Path::new(&broken))
        .expect("the key is named");
    assert!(matches!(line.status, Status::Unreadable(_)));
    assert!(!report.upgradable());
    let err = upgrade::resume_check(&generations(&etcd), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&broken) && err.contains("unreadable"), "{err}");

    let set_aside = upgrade::resume_check(&generations(&etcd), true).unwrap();
    assert_eq!(set_aside, vec![PathBuf::from(&broken)]);
    let keys = etcd.snapshot(PREFIX);
    assert!(!keys.contains_key(&broken));
    assert_eq!(
        keys[&format!("{PREFIX}/quarantine/gen-000001/topic/orders")],
        b"{ not json"
    );
    let dir = tempfile::tempdir().unwrap();
    let cluster = open_cluster(&etcd, dir.path()).unwrap();
    assert_eq!(cluster.topics().len(), 1, "the rest loads");
}
