//! Upgrading metadata written in schemas 1 and 2 (the committed fixtures): check
//! writes nothing, upgrade migrates into a new generation, rollback restores
//! the old one byte for byte, finalize prunes it; newer, unreadable and
//! unmigrated objects are refused, never silently dropped.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use mg_controlplane::operate::MirrorAction;
use mg_sc::model::{MirrorState, PartitionMirror, TopicReplicas};
use mg_sc::store::LoadError;
use mg_sc::upgrade::{self, Generations, Status, Steps, Upgraded};
use mg_sc::{AdminError, Cluster};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metadata-v1/sc")
}

/// Every file under `dir` with its bytes: a fingerprint of the whole tree.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

fn v1_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    mg_testkit::copy_dir(&fixture(), dir.path());
    dir
}

#[test]
fn check_reports_every_object_and_writes_nothing() {
    let dir = v1_store();
    let before = snapshot(dir.path());
    let report = upgrade::check(&Generations::files(dir.path())).unwrap();
    assert_eq!(snapshot(dir.path()), before, "check wrote something");
    assert!(report.upgradable() && report.needs_migration());
    let status = |name: &str| {
        report
            .lines
            .iter()
            .find(|l| l.path.ends_with(name))
            .map(|l| l.status.clone())
    };
    assert_eq!(
        status("orders.json"),
        Some(Status::NeedsMigration { from: 1, to: 2 })
    );
    assert_eq!(
        status("edge-metrics-0.json"),
        Some(Status::NeedsMigration { from: 1, to: 3 })
    );
    assert_eq!(status("5001.json"), Some(Status::Ok));
    let text = report.render();
    assert!(
        text.contains("topic: 0 ok, 2 need migration, 0 unreadable, 0 too new"),
        "{text}"
    );
}

#[test]
fn unmigrated_metadata_refuses_to_start() {
    let dir = v1_store();
    let err = Cluster::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::NeedsMigration {
                found: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        upgrade::resume_check(&Generations::files(dir.path()), false)
            .unwrap_err()
            .to_string()
            .contains("run `cluster upgrade` first")
    );
}

#[test]
fn upgrade_rollback_upgrade_finalize() {
    let dir = v1_store();
    let original = snapshot(&dir.path().join("metadata"));
    let mut seen = Vec::new();
    let outcome = upgrade::upgrade(
        &Generations::files(dir.path()),
        &mut Steps::default(),
        |done, total| seen.push((done, total)),
    )
    .unwrap();
    assert_eq!(
        outcome,
        Upgraded::Migrated {
            previous: "metadata".into(),
            current: "gen-000001".into(),
            objects: 6
        }
    );
    assert_eq!(seen.last(), Some(&(6, 6)), "progress reached the end");
    assert_eq!(
        fs::read_to_string(dir.path().join("CURRENT")).unwrap(),
        "gen-000001"
    );
    assert_eq!(
        snapshot(&dir.path().join("metadata")),
        original,
        "the previous generation is kept as it was"
    );

    let cluster = Cluster::open(dir.path()).unwrap();
    let home = cluster
        .topics()
        .into_iter()
        .find(|t| t.name == "edge-metrics")
        .unwrap();
    assert_eq!(
        home.replicas,
        TopicReplicas::MirrorHome {
            remotes: vec!["edge1".into()],
            home_to_remote: false
        }
    );
    let role = cluster
        .partitions()
        .into_iter()
        .find(|p| p.topic == "edge-metrics")
        .unwrap()
        .mirror;
    assert!(matches!(
        role,
        Some(PartitionMirror::Home { source: false, .. })
    ));
    // The unknown field is carried into the new generation.
    let orders = fs::read_to_string(dir.path().join("gen-000001/topic/orders.json")).unwrap();
    assert!(
        orders.contains("\"owner\": \"billing team\"") && orders.contains("\"schema\": 2"),
        "{orders}"
    );
    drop(cluster);

    // Before finalizing, rollback restores the previous generation exactly.
    let record = upgrade::rollback(&Generations::files(dir.path())).unwrap();
    assert_eq!(
        (record.previous.as_str(), record.current.as_str()),
        ("metadata", "gen-000001")
    );
    assert!(!dir.path().join("gen-000001").exists());
    assert_eq!(snapshot(&dir.path().join("metadata")), original);
    assert!(matches!(
        Cluster::open(dir.path()),
        Err(LoadError::NeedsMigration { .. })
    ));

    // Again, then finalize: only now is the backup pruned, and rollback is over.
    upgrade::upgrade(
        &Generations::files(dir.path()),
        &mut Steps::default(),
        |_, _| {},
    )
    .unwrap();
    assert!(
        upgrade::upgrade(
            &Generations::files(dir.path()),
            &mut Steps::default(),
            |_, _| {}
        )
        .is_err(),
        "a pending upgrade blocks another"
    );
    upgrade::finalize(&Generations::files(dir.path())).unwrap();
    assert!(!dir.path().join("metadata").exists());
    assert!(
        upgrade::rollback(&Generations::files(dir.path()))
            .unwrap_err()
            .to_string()
            .contains("finalized")
    );
    assert_eq!(
        upgrade::upgrade(
            &Generations::files(dir.path()),
            &mut Steps::default(),
            |_, _| {}
        )
        .unwrap(),
        Upgraded::UpToDate
    );
    let cluster = Cluster::open(dir.path()).unwrap();
    assert_eq!(cluster.partitions().len(), 2);
    // The upgraded cluster keeps working.
    cluster.create_topic("after", 1).unwrap();
    assert!(matches!(
        cluster.create_topic("orders", 1),
        Err(AdminError::Exists { .. })
    ));
}

#[test]
fn newer_and_unreadable_objects_are_refused_and_named() {
    let dir = v1_store();
    let topics = dir.path().join("metadata/topic");
    fs::write(
        topics.join("future.json"),
        r#"{"schema": 9, "kind": "topic", "name": "future", "spec": {"name": "future"}}"#,
    )
    .unwrap();
    let report = upgrade::check(&Generations::files(dir.path())).unwrap();
    assert!(!report.upgradable());
    assert!(report.render().contains("written by a newer schema (9)"));
    let err = upgrade::upgrade(
        &Generations::files(dir.path()),
        &mut Steps::default(),
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("future.json"), "{err}");
    assert!(!dir.path().join("CURRENT").exists(), "nothing was changed");
    let err = upgrade::resume_check(&Generations::files(dir.path()), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("newer schema"),
        "the downgrade guard cannot be skipped: {err}"
    );
    fs::remove_file(topics.join("future.json")).unwrap();

    upgrade::upgrade(
        &Generations::files(dir.path()),
        &mut Steps::default(),
        |_, _| {},
    )
    .unwrap();
    let broken = dir.path().join("gen-000001/topic/orders.json");
    fs::write(&broken, b"{\"schema\": 2, \"kind\": \"topic\"").unwrap();
    let err = Cluster::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("orders.json"), "{err}");
    let err = upgrade::resume_check(&Generations::files(dir.path()), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orders.json") && err.contains("unreadable"),
        "{err}"
    );
    // The explicit opt-in sets the one bad object aside; the rest starts.
    let set_aside = upgrade::resume_check(&Generations::files(dir.path()), true).unwrap();
    assert_eq!(set_aside, vec![broken.clone()]);
    assert!(
        dir.path()
            .join("quarantine/gen-000001/topic/orders.json")
            .exists()
    );
    let cluster = Cluster::open(dir.path()).unwrap();
    assert_eq!(cluster.topics().len(), 1);
}

#[test]
fn unknown_envelope_fields_are_refused_not_dropped() {
    let dir = v1_store();
    let path = dir.path().join("metadata/spu/5001.json");
    let text = fs::read_to_string(&path).unwrap().replacen(
        "\"schema\": 1,",
        "\"schema\": 1, \"checksum\": \"x\",",
        1,
    );
    fs::write(&path, text).unwrap();
    let report = upgrade::check(&Generations::files(dir.path())).unwrap();
    assert!(
        report.render().contains(r#"unknown field "checksum""#),
        "{}",
        report.render()
    );
    assert!(!report.upgradable());
}

fn v2_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metadata-v2/sc");
    mg_testkit::copy_dir(&fixture, dir.path());
    dir
}

/// Schema 2 to 3: mirror partitions gain a state and an epoch. The upgrade
/// migrates every partition to `active` at epoch 0 (unknown fields kept),
/// leaves the schema-2 topics as they are, and a failover made afterwards
/// is persisted at schema 3 and survives a restart; a rollback before
/// finalizing brings back the schema-2 files byte for byte.
#[test]
fn schema_2_partitions_migrate_to_mirror_states() {
    let dir = v2_store();
    let original = snapshot(&dir.path().join("metadata"));
    assert!(matches!(
        Cluster::open(dir.path()).unwrap_err(),
        LoadError::NeedsMigration {
            found: 2,
            current: 3,
            ..
        }
    ));
    let report = upgrade::check(&Generations::files(dir.path())).unwrap();
    let text = report.render();
    assert!(
        text.contains("partition: 0 ok, 2 need migration, 0 unreadable, 0 too new"),
        "{text}"
    );
    assert!(text.contains("topic: 2 ok, 0 need migration"), "{text}");
    upgrade::upgrade(
        &Generations::files(dir.path()),
        &mut Steps::default(),
        |_, _| {},
    )
    .unwrap();

    let cluster = Cluster::open(dir.path()).unwrap();
    for partition in cluster.partitions() {
        assert_eq!(partition.mirror_state, MirrorState::Active, "{partition:?}");
        assert_eq!(partition.mirror_epoch, 0);
    }
    let migrated =
        fs::read_to_string(dir.path().join("gen-000001/partition/edge-metrics-0.json")).unwrap();
    assert!(
        migrated.contains("\"schema\": 3") && migrated.contains("\"placement_note\": \"rack a\""),
        "{migrated}"
    );

    // The home receives edge-metrics: it may fail it over. It sends
    // broadcast: that one is refused here, named.
    let targets = cluster
        .act_on_mirror("edge-metrics", Some("edge1"), MirrorAction::Failover)
        .unwrap();
    assert_eq!(targets, vec![("edge-metrics".to_string(), 0)]);
    let refused = cluster
        .act_on_mirror("broadcast", None, MirrorAction::Pause)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("this cluster sends topic \"broadcast\""),
        "{refused}"
    );
    drop(cluster);

    let cluster = Cluster::open(dir.path()).unwrap();
    let failed_over = cluster
        .partitions()
        .into_iter()
        .find(|p| p.topic == "edge-metrics")
        .unwrap();
    assert_eq!(failed_over.mirror_state, MirrorState::FailedOver);
    assert_eq!(failed_over.mirror_epoch, 1);
    // Pushed to SPUs as ended at the new epoch, the role kept to name it.
    let replica = failed_over.to_replica();
    assert!(replica.control.ended && replica.control.epoch == 1);
    assert!(replica.mirror.is_some());
    drop(cluster);

    upgrade::rollback(&Generations::files(dir.path())).unwrap();
    assert_eq!(snapshot(&dir.path().join("metadata")), original);
}
