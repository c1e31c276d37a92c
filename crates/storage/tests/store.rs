//! The store on real files: the group commit, removal, setting aside.

use std::sync::Arc;

use mg_storage::{FsyncPolicy, LogConfig, Store};
use mg_testkit::batch_bytes;

fn store(dir: &std::path::Path) -> Store {
    Store::new(
        dir,
        LogConfig {
            fsync: FsyncPolicy::OnCommit,
            ..LogConfig::default()
        },
    )
    .unwrap()
}

#[test]
fn a_commit_covers_every_append_made_before_it_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store(dir.path()));
    let partition = store.partition("t", 0).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let partition = Arc::clone(&partition);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    partition.lock().append(&batch_bytes(&[&[b"v"]])).unwrap();
                    let written = partition.lock().written();
                    partition.commit().unwrap();
                    // Everything appended before the commit began is durable.
                    assert!(partition.lock().durable() >= written);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let log = partition.lock();
    assert_eq!(log.leo(), 200);
    assert_eq!(log.durable(), log.written());
    drop(log);
    // Nothing left to commit: returns at once, syncing nothing.
    assert!(partition.lock().commit_point().is_none());
    partition.commit().unwrap();
}

#[test]
fn a_removed_partition_starts_again_empty_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let partition = store.partition("t", 0).unwrap();
    partition
        .lock()
        .append(&batch_bytes(&[&[b"a", b"b", b"c"]]))
        .unwrap();
    drop(partition);
    assert!(store.remove("t", 0).unwrap());
    assert!(!dir.path().join("t-0").exists());
    assert!(!store.remove("t", 0).unwrap(), "nothing left to remove");
    let again = store.partition("t", 0).unwrap();
    assert_eq!(again.lock().leo(), 0);
    let appended = again.lock().append(&batch_bytes(&[&[b"z"]])).unwrap();
    assert_eq!(appended.base_offset, 0);
    // A restart finds the new partition only.
    drop(again);
    drop(store);
    let reopened = self::store(dir.path());
    assert_eq!(reopened.partition("t", 0).unwrap().lock().leo(), 1);
    assert!(!dir.path().join(".removed").exists());
}

#[test]
fn set_aside_moves_a_partition_out_of_service_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store
        .partition("old", 3)
        .unwrap()
        .lock()
        .append(&batch_bytes(&[&[b"a"]]))
        .unwrap();
    store.partition("new", 0).unwrap();
    assert_eq!(
        store.on_disk().unwrap(),
        vec![("new".to_string(), 0), ("old".to_string(), 3)]
    );
    let aside = store.set_aside("old", 3).unwrap().expect("moved");
    assert!(aside.starts_with(dir.path().join("orphaned")));
    assert!(aside.join("00000000000000000000.log").exists());
    assert_eq!(store.on_disk().unwrap(), vec![("new".to_string(), 0)]);
    assert_eq!(store.partition("old", 3).unwrap().lock().leo(), 0);
}

/// Past `WRITEBACK_BYTES` unsynced, a partition is synced in the background
/// with no one committing; below it, nothing is synced (an acks = 1 load
/// pays no sync per request).
#[test]
fn writeback_syncs_a_partition_in_the_background_past_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let partition = store.partition("t", 0).unwrap();
    let value = vec![b'w'; 64 << 10];
    let batch = batch_bytes(&[&[&value[..]]]);
    let append = || {
        let mut log = partition.lock();
        log.append_unsynced(&batch).unwrap();
        store.appended(&partition, log);
    };
    append();
    assert_eq!(partition.lock().durable(), 0, "below the threshold");
    while partition.lock().written() < mg_storage::store::WRITEBACK_BYTES {
        append();
    }
    let written = partition.lock().written();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while partition.lock().durable() < written {
        assert!(
            std::time::Instant::now() < deadline,
            "the writeback never synced the partition"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
