//! Partition logs on real files: offsets, checks, rollover, index, recovery.

use std::fs::{self, OpenOptions};
use std::io::Write;

use mg_storage::{AppendError, Batches, FsyncPolicy, LogConfig, PartitionLog, check_batch};
use mg_testkit::batch_bytes;

fn config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config).expect("opens").0
}

/// (base offset, record count) of every batch in `bytes`.
fn batches(bytes: &[u8]) -> Vec<(i64, i64)> {
    Batches::new(bytes)
        .map(|b| b.expect("stored batches are valid"))
        .map(|b| (b.base_offset, b.records))
        .collect()
}

#[test]
fn appends_assign_offsets_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config());
    let first = log.append(&batch_bytes(&[&[b"a", b"b"], &[b"c"]])).unwrap();
    assert_eq!((first.base_offset, first.records), (0, 3));
    let second = log.append(&batch_bytes(&[&[b"d"]])).unwrap();
    assert_eq!((second.base_offset, second.records), (3, 1));
    assert_eq!(log.leo(), 4);
    let all = log.read(0, u64::MAX).unwrap();
    assert_eq!(batches(&all), vec![(0, 2), (2, 1), (3, 1)]);
    // Only the base offsets changed: the CRC still holds and the values are there.
    assert!(all.windows(1).any(|w| w == b"d"));
    assert_eq!(
        batches(&log.read(2, u64::MAX).unwrap()),
        vec![(2, 1), (3, 1)]
    );
    assert_eq!(
        batches(&log.read(1, 1).unwrap()),
        vec![(0, 2)],
        "at least one batch"
    );
    assert!(
        log.read(4, u64::MAX).unwrap().is_empty(),
        "nothing at the log end"
    );
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config());
    log.append(&batch_bytes(&[&[b"ok"]])).unwrap();
    let size = log.size();

    let good = batch_bytes(&[&[b"first"], &[b"second"]]);
    let mut flipped = good.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0xff; // inside the second batch's records
    let err = log.append(&flipped).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::InvalidBatch(mg_storage::BatchError::BadCrc { .. })
        ),
        "{err}"
    );

    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    assert!(matches!(
        log.append(&bad_magic),
        Err(AppendError::InvalidBatch(
            mg_storage::BatchError::BadMagic { .. }
        ))
    ));

    let mut long = good.clone();
    long[8..12].copy_from_slice(&100_000i32.to_be_bytes());
    assert!(matches!(
        log.append(&long),
        Err(AppendError::InvalidBatch(
            mg_storage::BatchError::BadLength { .. }
        ))
    ));

    assert!(matches!(
        log.append(&good[..good.len() - 3]),
        Err(AppendError::InvalidBatch(_))
    ));
    assert!(matches!(
        log.append(&good[..5]),
        Err(AppendError::InvalidBatch(
            mg_storage::BatchError::Truncated { .. }
        ))
    ));

    assert_eq!(log.size(), size, "no partial write");
    assert_eq!(log.leo(), 1);
    drop(log);
    assert_eq!(open(dir.path(), config()).leo(), 1);
}

#[test]
fn size_limits_map_to_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let big = batch_bytes(&[&[&[7u8; 2000]]]);
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 1024,
            ..config()
        },
    );
    assert!(matches!(
        log.append(&big),
        Err(AppendError::TooLarge { .. })
    ));
    let mut log = open(
        tempfile::tempdir().unwrap().path(),
        LogConfig {
            max_partition_bytes: Some(3000),
            ..config()
        },
    );
    log.append(&big).unwrap();
    assert!(matches!(
        log.append(&big),
        Err(AppendError::PartitionFull { .. })
    ));
}

#[test]
fn empty_record_sets_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config());
    let appended = log.append(&[]).unwrap();
    assert_eq!((appended.records, appended.bytes), (0, 0));
    assert_eq!(log.leo(), 0);
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 200,
        ..config()
    };
    let mut log = open(dir.path(), cfg);
    for i in 0..100u32 {
        let value = format!("value-{i:04}-{}", "x".repeat(40));
        let a = log.append(&batch_bytes(&[&[value.as_bytes()]])).unwrap();
        assert_eq!(a.base_offset, i64::from(i));
    }
    let segments = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments > 5, "{segments} segments");
    for offset in [0, 1, 17, 50, 98, 99] {
        let got = batches(&log.read(offset, 1).unwrap());
        assert_eq!(got, vec![(offset, 1)], "offset {offset}");
    }
    let everything = batches(&log.read(0, u64::MAX).unwrap());
    assert_eq!(everything.len(), 100);
    drop(log);
    let (log, recovery) = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(recovery.leo, 100);
    assert_eq!(recovery.segments, segments);
    assert_eq!(recovery.truncated, None);
    assert_eq!(batches(&log.read(63, 1).unwrap()), vec![(63, 1)]);
}

/// A crash in the middle of a write leaves part of a batch at the end of the
/// active segment: recovery cuts exactly that, keeps every whole batch, and
/// the log takes appends again.
#[test]
fn recovery_cuts_a_torn_tail_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config());
    for i in 0..10 {
        log.append(&batch_bytes(&[&[format!("acked-{i}").as_bytes()]]))
            .unwrap();
    }
    let acked_size = log.size();
    drop(log);
    let segment = dir.path().join(format!("{:020}.log", 0));
    let torn = batch_bytes(&[&[b"never acknowledged, half written"]]);
    for cut in [1, 11, 30, torn.len() - 1] {
        OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&torn[..cut])
            .unwrap();
        let (mut log, recovery) = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(recovery.leo, 10, "cut at {cut}");
        let (kept, reason) = recovery.truncated.expect("a tail was cut");
        assert_eq!(kept, acked_size);
        assert!(!reason.is_empty());
        assert_eq!(fs::metadata(&segment).unwrap().len(), acked_size);
        assert_eq!(batches(&log.read(0, u64::MAX).unwrap()).len(), 10);
        log.sync().unwrap();
    }
    let mut log = open(dir.path(), config());
    assert_eq!(
        log.append(&batch_bytes(&[&[b"after"]]))
            .unwrap()
            .base_offset,
        10
    );
}

#[test]
fn a_damaged_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..config()
    };
    let mut log = open(dir.path(), cfg);
    for i in 0..40 {
        log.append(&batch_bytes(&[&[format!("v{i}").as_bytes()]]))
            .unwrap();
    }
    drop(log);
    let index = dir.path().join(format!("{:020}.index", 0));
    fs::write(&index, b"garbage").unwrap();
    let log = open(dir.path(), cfg);
    for offset in 0..40 {
        assert_eq!(batches(&log.read(offset, 1).unwrap()), vec![(offset, 1)]);
    }
    assert_eq!(fs::metadata(&index).unwrap().len() % 8, 0);
}

#[test]
fn batch_check_reads_counts_from_last_offset_delta() {
    let bytes = batch_bytes(&[&[b"a", b"b", b"c"]]);
    let info = check_batch(&bytes, 0).unwrap();
    assert_eq!((info.records, info.len), (3, bytes.len()));
}

#[test]
fn mirrored_appends_keep_the_senders_offsets_and_bytes_or_write_nothing() {
    let sender_dir = tempfile::tempdir().unwrap();
    let receiver_dir = tempfile::tempdir().unwrap();
    let mut sender = open(sender_dir.path(), config());
    sender
        .append(&batch_bytes(&[&[b"a", b"b"], &[b"c"]]))
        .unwrap();
    sender.append(&batch_bytes(&[&[b"d"]])).unwrap();
    let mut receiver = open(receiver_dir.path(), config());

    // From the receiver's log end: stored exactly as the sender holds them.
    let first = sender.read(0, 1).unwrap();
    assert_eq!(batches(&first), vec![(0, 2)]);
    let appended = receiver.append_mirrored(&first, 0).unwrap();
    assert_eq!((appended.base_offset, appended.records), (0, 2));
    let rest = sender.read(receiver.leo(), u64::MAX).unwrap();
    receiver.append_mirrored(&rest, 0).unwrap();
    assert_eq!(
        receiver.read(0, u64::MAX).unwrap(),
        sender.read(0, u64::MAX).unwrap()
    );

    // Again, from an offset the receiver already holds: refused, nothing written.
    let again = sender.read(2, u64::MAX).unwrap();
    let err = receiver.append_mirrored(&again, 0).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Misaligned {
                expected: 4,
                found: 2
            }
        ),
        "{err}"
    );
    assert_eq!(receiver.leo(), 4);

    // A gap inside one record set: refused as a whole.
    let mut gapped = sender.read(0, 1).unwrap();
    gapped.extend_from_slice(&sender.read(3, u64::MAX).unwrap());
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = open(fresh_dir.path(), config());
    let err = fresh.append_mirrored(&gapped, 0).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Misaligned {
                expected: 2,
                found: 3
            }
        ),
        "{err}"
    );
    assert_eq!(fresh.leo(), 0);
}

/// A fence refuses mirrored appends of older epochs from the moment it is
/// raised, never lowers, and leaves the log as it was.
#[test]
fn a_mirror_fence_refuses_older_epochs() {
    let sender_dir = tempfile::tempdir().unwrap();
    let receiver_dir = tempfile::tempdir().unwrap();
    let mut sender = open(sender_dir.path(), config());
    sender.append(&batch_bytes(&[&[b"a"], &[b"b"]])).unwrap();
    let mut receiver = open(receiver_dir.path(), config());
    receiver
        .append_mirrored(&sender.read(0, 1).unwrap(), 3)
        .unwrap();
    receiver.fence_mirror(4);
    receiver.fence_mirror(2);
    assert_eq!(receiver.mirror_fence(), 4);
    let rest = sender.read(receiver.leo(), u64::MAX).unwrap();
    let err = receiver.append_mirrored(&rest, 3).unwrap_err();
    assert!(
        matches!(err, AppendError::Fenced { epoch: 3, fence: 4 }),
        "{err}"
    );
    assert_eq!(receiver.leo(), 1);
    // A link admitted at the new epoch (a resume) goes on where it stopped.
    receiver.append_mirrored(&rest, 4).unwrap();
    assert_eq!(
        receiver.read(0, u64::MAX).unwrap(),
        sender.read(0, u64::MAX).unwrap()
    );
}
