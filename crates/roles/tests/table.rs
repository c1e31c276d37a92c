//! Behaviour of the role table: epochs, full sync, incremental changes,
//! leadership filtering, copy-on-write snapshots, and atomic publication
//! under concurrent readers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mg_roles::{
    ApplyOutcome, HomePartitionConfig, PartitionMirrorConfig, ProducePolicy, ReplicaRole,
    RoleChange, RoleTable, RoleUpdate,
};
use proptest::prelude::*;

const ME: i32 = 5001;

fn home(remote: &str, source: bool) -> Option<PartitionMirrorConfig> {
    Some(PartitionMirrorConfig::Home(HomePartitionConfig {
        remote_cluster: remote.into(),
        remote_replica: format!("{remote}-0"),
        source,
    }))
}

fn sync(epoch: i64, all: Vec<ReplicaRole>) -> RoleUpdate {
    RoleUpdate::Sync { epoch, all }
}

fn changes(epoch: i64, changes: Vec<RoleChange>) -> RoleUpdate {
    RoleUpdate::Changes { epoch, changes }
}

#[test]
fn empty_table_knows_nothing() {
    let table = RoleTable::new(ME);
    let snap = table.snapshot();
    assert!(snap.is_empty());
    assert!(snap.get("t", 0).is_none());
    assert_eq!(snap.epoch(), i64::MIN);
}

#[test]
fn sync_keeps_only_partitions_led_here() {
    let table = RoleTable::new(ME);
    let outcome = table.apply(sync(
        1,
        vec![
            ReplicaRole::new("a", 0, ME, None),
            ReplicaRole::new("a", 1, 5002, None),
            ReplicaRole::new("b", 0, ME, home("edge1", false)),
        ],
    ));
    assert_eq!(
        outcome,
        ApplyOutcome::Applied {
            epoch: 1,
            partitions: 2
        }
    );
    let snap = table.snapshot();
    assert_eq!(snap.get("a", 0).unwrap().policy(), ProducePolicy::Open);
    assert!(snap.get("a", 1).is_none(), "led by another SPU");
    assert_eq!(
        snap.get("b", 0).unwrap().policy(),
        ProducePolicy::MirroredFromRemote
    );
    assert_eq!(
        snap.get("b", 0).unwrap().mirror(),
        home("edge1", false).as_ref()
    );
}

#[test]
fn full_sync_removes_what_it_does_not_list() {
    let table = RoleTable::new(ME);
    table.apply(sync(
        1,
        vec![
            ReplicaRole::new("a", 0, ME, None),
            ReplicaRole::new("b", 0, ME, None),
        ],
    ));
    table.apply(sync(2, vec![ReplicaRole::new("b", 0, ME, None)]));
    let snap = table.snapshot();
    assert!(snap.get("a", 0).is_none());
    assert!(snap.topic("a").is_none(), "an emptied topic disappears");
    assert!(snap.get("b", 0).is_some());
    assert_eq!(snap.len(), 1);
}

#[test]
fn stale_and_duplicate_epochs_are_ignored() {
    let table = RoleTable::new(ME);
    table.apply(sync(5, vec![ReplicaRole::new("a", 0, ME, None)]));
    for epoch in [5, 4, i64::MIN] {
        let outcome = table.apply(changes(
            epoch,
            vec![RoleChange::Remove {
                topic: "a".into(),
                partition: 0,
            }],
        ));
        assert_eq!(
            outcome,
            ApplyOutcome::Stale {
                current: 5,
                offered: epoch
            }
        );
        let outcome = table.apply(sync(epoch, vec![]));
        assert_eq!(
            outcome,
            ApplyOutcome::Stale {
                current: 5,
                offered: epoch
            }
        );
    }
    assert!(table.snapshot().get("a", 0).is_some());
    assert_eq!(table.epoch(), 5);
}

#[test]
fn changes_upsert_replace_and_remove() {
    let table = RoleTable::new(ME);
    table.apply(sync(1, vec![ReplicaRole::new("a", 0, ME, None)]));
    table.apply(changes(
        2,
        vec![
            RoleChange::Upsert(ReplicaRole::new("a", 0, ME, home("edge1", false))),
            RoleChange::Upsert(ReplicaRole::new("a", 7, ME, None)),
            RoleChange::Upsert(ReplicaRole::new("c", 3, ME, None)),
        ],
    ));
    let snap = table.snapshot();
    assert_eq!(
        snap.get("a", 0).unwrap().policy(),
        ProducePolicy::MirroredFromRemote
    );
    assert!(snap.get("a", 7).is_some(), "sparse index found by search");
    assert!(snap.get("a", 3).is_none());
    assert_eq!(snap.len(), 3);

    // Leadership moves away: the partition leaves this SPU's table.
    table.apply(changes(
        3,
        vec![RoleChange::Upsert(ReplicaRole::new("a", 0, 5002, None))],
    ));
    table.apply(changes(
        4,
        vec![RoleChange::Remove {
            topic: "c".into(),
            partition: 3,
        }],
    ));
    let snap = table.snapshot();
    assert!(snap.get("a", 0).is_none());
    assert!(snap.get("c", 3).is_none());
    assert_eq!(snap.len(), 1);
}

#[test]
fn a_held_snapshot_never_changes() {
    let table = RoleTable::new(ME);
    table.apply(sync(1, vec![ReplicaRole::new("a", 0, ME, None)]));
    let before = table.snapshot_arc();
    table.apply(changes(
        2,
        vec![RoleChange::Upsert(ReplicaRole::new(
            "a",
            0,
            ME,
            home("edge1", false),
        ))],
    ));
    table.apply(changes(
        3,
        vec![RoleChange::Upsert(ReplicaRole::new("a", 1, ME, None))],
    ));
    assert_eq!(before.epoch(), 1);
    assert_eq!(before.get("a", 0).unwrap().policy(), ProducePolicy::Open);
    assert!(before.get("a", 1).is_none());
    assert_eq!(
        table.snapshot().get("a", 0).unwrap().policy(),
        ProducePolicy::MirroredFromRemote
    );
}

/// Many topics, spread over every shard, all still found after edits.
#[test]
fn many_topics_across_shards() {
    let table = RoleTable::new(ME);
    let all = (0..2000)
        .map(|t| ReplicaRole::new(format!("topic-{t}"), (t % 5) as u32, ME, None))
        .collect();
    table.apply(sync(1, all));
    let removals = (0..2000)
        .step_by(2)
        .map(|t| RoleChange::Remove {
            topic: format!("topic-{t}"),
            partition: (t % 5) as u32,
        })
        .collect();
    table.apply(changes(2, removals));
    let snap = table.snapshot();
    assert_eq!(snap.len(), 1000);
    for t in 0..2000 {
        assert_eq!(
            snap.get(&format!("topic-{t}"), (t % 5) as u32).is_some(),
            t % 2 == 1,
            "topic-{t}"
        );
    }
    assert_eq!(snap.topics().count(), 1000);
}

/// Readers on other threads only ever see whole updates: every update
/// rewrites all partitions of a topic with one marker, and a snapshot in
/// which two partitions disagree would be a torn publication.
#[test]
fn readers_see_whole_updates_only() {
    const PARTITIONS: u32 = 64;
    let table = Arc::new(RoleTable::new(ME));
    let marked = |epoch: i64| {
        (0..PARTITIONS)
            .map(|p| {
                RoleChange::Upsert(ReplicaRole::new(
                    "t",
                    p,
                    ME,
                    home(&format!("m{epoch}"), epoch % 2 == 0),
                ))
            })
            .collect::<Vec<_>>()
    };
    table.apply(changes(1, marked(1)));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (table, done) = (table.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !done.load(Ordering::Acquire) {
                    let snap = table.snapshot();
                    let topic = snap.topic("t").expect("topic always present");
                    let first = topic.partition(0).unwrap().mirror().cloned();
                    for p in 1..PARTITIONS {
                        assert_eq!(
                            topic.partition(p).unwrap().mirror(),
                            first.as_ref(),
                            "torn snapshot"
                        );
                    }
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for epoch in 2..=2000 {
        assert!(matches!(
            table.apply(changes(epoch, marked(epoch))),
            ApplyOutcome::Applied { .. }
        ));
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        assert!(reader.join().expect("reader did not panic") > 0);
    }
}

// Model-based: any sequence of updates leaves the table equal to a plain map.

#[derive(Clone, Debug)]
enum Op {
    Sync(Vec<(u8, u32, bool, u8)>),
    Changes(Vec<(bool, u8, u32, bool, u8)>),
    Replay,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let entry = (0u8..6, 0u32..12, any::<bool>(), 0u8..4);
    prop::collection::vec(
        prop_oneof![
            1 => prop::collection::vec(entry.clone(), 0..30).prop_map(Op::Sync),
            4 => prop::collection::vec((any::<bool>(), 0u8..6, 0u32..12, any::<bool>(), 0u8..4), 0..20).prop_map(Op::Changes),
            1 => Just(Op::Replay),
        ],
        1..20,
    )
}

fn mirror_of(kind: u8) -> Option<PartitionMirrorConfig> {
    match kind {
        0 => None,
        1 => home("r", false),
        2 => home("r", true),
        _ => Some(PartitionMirrorConfig::Remote(Default::default())),
    }
}

proptest! {
    #[test]
    fn table_matches_a_plain_map(ops in ops()) {
        let table = RoleTable::new(ME);
        let mut model: BTreeMap<(String, u32), Option<PartitionMirrorConfig>> = BTreeMap::new();
        let mut epoch = 0;
        for op in ops {
            match op {
                Op::Sync(all) => {
                    epoch += 1;
                    model.clear();
                    let all = all.into_iter().map(|(t, p, mine, kind)| {
                        let r = ReplicaRole::new(format!("t{t}"), p, if mine { ME } else { 7 }, mirror_of(kind));
                        // Applied in order: a later entry for the same partition wins.
                        let key = (r.topic.clone(), p);
                        if mine { model.insert(key, r.mirror.clone()); } else { model.remove(&key); }
                        r
                    }).collect();
                    table.apply(sync(epoch, all));
                }
                Op::Changes(list) => {
                    epoch += 1;
                    let list = list.into_iter().map(|(upsert, t, p, mine, kind)| {
                        let key = (format!("t{t}"), p);
                        if upsert {
                            if mine { model.insert(key.clone(), mirror_of(kind)); } else { model.remove(&key); }
                            RoleChange::Upsert(ReplicaRole::new(&key.0, p, if mine { ME } else { 7 }, mirror_of(kind)))
                        } else {
                            model.remove(&key);
                            RoleChange::Remove { topic: key.0, partition: p }
                        }
                    }).collect();
                    table.apply(changes(epoch, list));
                }
                Op::Replay if epoch > 0 => {
                    // A duplicate of the last epoch must change nothing.
                    let outcome = table.apply(sync(epoch, vec![]));
                    let stale = matches!(outcome, ApplyOutcome::Stale { .. });
                    prop_assert!(stale);
                }
                Op::Replay => {}
            }
            let snap = table.snapshot();
            prop_assert_eq!(snap.len(), model.len());
            for ((topic, p), mirror) in &model {
                let got = snap.get(topic, *p).map(|r| r.mirror().cloned());
                prop_assert_eq!(got, Some(mirror.clone()));
            }
            let listed: usize = snap.topics().map(|t| t.partitions().len()).sum();
            prop_assert_eq!(listed, model.len());
        }
    }
}

/// The reader's one-topic memo never outlives the snapshot it was taken from.
#[test]
fn reader_memo_follows_every_update() {
    let table = RoleTable::new(ME);
    let mut reader = table.reader();
    assert!(reader.load_topic("a").1.is_none());
    table.apply(sync(
        1,
        vec![
            ReplicaRole::new("a", 0, ME, None),
            ReplicaRole::new("b", 0, ME, home("edge1", false)),
        ],
    ));
    let (_, a) = reader.load_topic("a");
    assert_eq!(
        a.unwrap().partition(0).unwrap().policy(),
        ProducePolicy::Open
    );
    // Same topic again (memo hit), then another topic (memo replaced).
    assert!(reader.load_topic("a").1.is_some());
    let (_, b) = reader.load_topic("b");
    assert_eq!(
        b.unwrap().partition(0).unwrap().policy(),
        ProducePolicy::MirroredFromRemote
    );
    // The role changes: the memo of "b" must not survive the new snapshot.
    table.apply(changes(
        2,
        vec![RoleChange::Upsert(ReplicaRole::new(
            "b",
            0,
            ME,
            home("edge1", true),
        ))],
    ));
    let (snap, b) = reader.load_topic("b");
    assert_eq!(snap.epoch(), 2);
    assert_eq!(
        b.unwrap().partition(0).unwrap().policy(),
        ProducePolicy::Open
    );
    // The topic goes away entirely.
    table.apply(changes(
        3,
        vec![RoleChange::Remove {
            topic: "b".into(),
            partition: 0,
        }],
    ));
    assert!(reader.load_topic("b").1.is_none());
    assert!(reader.load_topic("a").1.is_some());
}

/// A restarted SC may start its epochs over: the first sync of a new
/// session applies anyway, and the session's later updates build on it.
#[test]
fn a_new_session_resyncs_whatever_its_epoch() {
    let table = RoleTable::new(ME);
    table.apply(sync(
        100,
        vec![
            ReplicaRole::new("a", 0, ME, None),
            ReplicaRole::new("gone", 0, ME, None),
        ],
    ));
    let outcome = table.resync(3, vec![ReplicaRole::new("a", 0, ME, home("edge1", false))]);
    assert_eq!(
        outcome,
        ApplyOutcome::Applied {
            epoch: 3,
            partitions: 1
        }
    );
    let snap = table.snapshot();
    assert_eq!(
        snap.get("a", 0).unwrap().policy(),
        ProducePolicy::MirroredFromRemote
    );
    assert!(snap.get("gone", 0).is_none());
    assert!(matches!(
        table.apply(changes(3, vec![])),
        ApplyOutcome::Stale { .. }
    ));
    assert!(matches!(
        table.apply(changes(4, vec![])),
        ApplyOutcome::Applied { .. }
    ));
}
