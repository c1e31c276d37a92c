//! The guard against Fluvio's own rule and Fluvio's own response decoder.

use std::io::Cursor;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use fluvio_protocol::Decoder;
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_spu_schema::produce::ProduceResponse;
use mg_guard::{Guard, RespondError, StatsSnapshot, Verdict};
use mg_roles::{ReplicaRole, RoleChange, RoleTable, RoleUpdate};
use mg_testkit::{ProduceSpec, home, remote};
use mg_wire::ErrorCode;

const ME: i32 = 5001;

fn guard_with(roles: Vec<ReplicaRole>) -> Guard {
    let table = Arc::new(RoleTable::new(ME));
    table.apply(RoleUpdate::Sync {
        epoch: 1,
        all: roles,
    });
    Guard::new(table)
}

fn one_record() -> Vec<Vec<Vec<u8>>> {
    vec![vec![b"v".to_vec()]]
}

/// Our code for what Fluvio's SPU would answer: leadership first, then
/// `PartitionMirrorConfig::accept_traffic`.
fn fluvio_rule(led_here: bool, mirror: Option<&PartitionMirrorConfig>) -> Option<FluvioCode> {
    if !led_here {
        return Some(FluvioCode::NotLeaderForPartition);
    }
    mirror.and_then(|m| m.accept_traffic())
}

fn to_ours(code: Option<FluvioCode>) -> Option<ErrorCode> {
    code.map(|c| match c {
        FluvioCode::NotLeaderForPartition => ErrorCode::NotLeaderForPartition,
        FluvioCode::MirrorProduceFromHome => ErrorCode::MirrorProduceFromHome,
        FluvioCode::MirrorProduceFromRemoteNotAllowed => {
            ErrorCode::MirrorProduceFromRemoteNotAllowed
        }
        other => panic!("accept_traffic returned {other:?}"),
    })
}

/// Every role the table can hold, and every way a partition can be unknown,
/// judged through a real frame: the guard's verdict must be Fluvio's.
#[test]
fn verdicts_equal_fluvio_accept_traffic_on_every_config() {
    let mirrors: Vec<Option<PartitionMirrorConfig>> = vec![
        None,
        Some(home("edge1", false)),
        Some(home("edge1", true)),
        Some(remote("home", false)),
        Some(remote("home", true)),
        // Field values other than the flags must not matter.
        Some(PartitionMirrorConfig::Home(Default::default())),
        Some(PartitionMirrorConfig::Remote(Default::default())),
    ];
    // (topic, partition in request, leader of the stored role or None if absent)
    let mut roles = Vec::new();
    let mut cases = Vec::new();
    for (i, mirror) in mirrors.iter().enumerate() {
        let topic = format!("t{i}");
        roles.push(ReplicaRole::new(&topic, 0, ME, mirror.clone()));
        roles.push(ReplicaRole::new(&topic, 1, ME + 1, mirror.clone())); // led elsewhere
        cases.push((topic.clone(), 0, true, mirror.clone()));
        cases.push((topic.clone(), 1, false, mirror.clone()));
        cases.push((topic.clone(), 2, false, mirror.clone())); // partition unknown
    }
    cases.push(("unknown-topic".into(), 0, false, None));
    let mut guard = guard_with(roles);

    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: cases
            .iter()
            .map(|(topic, partition, _, _)| (topic.clone(), vec![(*partition, one_record())]))
            .collect(),
        ..Default::default()
    };
    let frame = spec.frame(25, 3);
    let judgement = guard.judge(&frame).unwrap();
    let verdicts: Vec<_> = judgement.verdicts().collect();
    assert_eq!(verdicts.len(), cases.len());
    // `fold` (behind count, for_each, …) walks the topics as nested loops;
    // it must yield exactly what `next` does, across all these topics.
    let folded = judgement.verdicts().fold(Vec::new(), |mut all, v| {
        all.push((v.topic, v.partition, v.verdict.rejection()));
        all
    });
    let stepped: Vec<_> = verdicts
        .iter()
        .map(|v| (v.topic, v.partition, v.verdict.rejection()))
        .collect();
    assert_eq!(folded, stepped);
    for (verdict, (topic, partition, led_here, mirror)) in verdicts.iter().zip(&cases) {
        assert_eq!(
            (verdict.topic, verdict.partition),
            (topic.as_str(), *partition)
        );
        let expected = to_ours(fluvio_rule(*led_here, mirror.as_ref()));
        assert_eq!(
            verdict.verdict.rejection(),
            expected,
            "{topic}/{partition} {mirror:?}"
        );
    }
}

fn decode_response(out: &[u8], version: i16, correlation_id: i32) -> ProduceResponse {
    let size = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(size, out.len() - 4);
    assert_eq!(
        i32::from_be_bytes(out[4..8].try_into().unwrap()),
        correlation_id
    );
    let mut cursor = Cursor::new(&out[8..]);
    let response = ProduceResponse::decode_from(&mut cursor, version).unwrap();
    assert_eq!(cursor.position() as usize, out.len() - 8);
    response
}

/// One response entry per request entry, in order, duplicates included,
/// with storage outcomes merged into the accepted ones, as the official
/// client's positional matching requires.
#[test]
fn response_has_one_entry_per_request_entry_in_order() {
    let mut guard = guard_with(vec![
        ReplicaRole::new("plain", 0, ME, None),
        ReplicaRole::new("plain", 1, ME, None),
        ReplicaRole::new("mirror", 0, ME, Some(home("edge1", false))),
    ]);
    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: vec![
            (
                "plain".into(),
                vec![
                    (0, one_record()),
                    (1, one_record()),
                    (0, one_record()),
                    (9, one_record()),
                ],
            ),
            ("mirror".into(), vec![(0, one_record()), (0, one_record())]),
            ("empty".into(), vec![]),
            ("plain".into(), vec![(1, one_record())]),
        ],
        ..Default::default()
    };
    for version in [0, 1, 2, 5, 25] {
        let frame = spec.frame(version, 42);
        let judgement = guard.judge(&frame).unwrap();
        let accepted = judgement
            .verdicts()
            .filter(|v| v.verdict.is_accept())
            .count();
        assert_eq!(accepted, 4);
        let outcomes = vec![Ok(100), Ok(101), Err(ErrorCode::StorageError), Ok(103)];
        let mut out = BytesMut::new();
        judgement.respond(outcomes, &mut out).unwrap();

        let response = decode_response(&out, version, 42);
        let got: Vec<Vec<(u32, FluvioCode, i64)>> = response
            .responses
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code.clone(), p.base_offset))
                    .collect()
            })
            .collect();
        let names: Vec<&str> = response.responses.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["plain", "mirror", "empty", "plain"]);
        assert_eq!(
            got,
            vec![
                vec![
                    (0, FluvioCode::None, 100),
                    (1, FluvioCode::None, 101),
                    (0, FluvioCode::StorageError, 0),
                    (9, FluvioCode::NotLeaderForPartition, 0),
                ],
                vec![
                    (0, FluvioCode::MirrorProduceFromHome, 0),
                    (0, FluvioCode::MirrorProduceFromHome, 0)
                ],
                vec![],
                vec![(1, FluvioCode::None, 103)],
            ]
        );
        assert_eq!(
            response.responses[1].partitions[0].error_code.to_string(),
            "produce from home is not allowed"
        );
    }
}

#[test]
fn accepted_records_are_the_frame_bytes() {
    let mut guard = guard_with(vec![ReplicaRole::new("t", 0, ME, None)]);
    let spec = ProduceSpec {
        topics: vec![(
            "t".into(),
            vec![(0, vec![vec![b"hello".to_vec(), b"world".to_vec()]])],
        )],
        ..Default::default()
    };
    let frame = spec.frame(25, 1);
    let judgement = guard.judge(&frame).unwrap();
    let verdict = judgement.verdicts().next().unwrap();
    let Verdict::Accept(records) = verdict.verdict else {
        panic!("accepted")
    };
    let bytes: Bytes = records.to_bytes();
    assert_eq!(bytes.as_ptr(), frame[records.range()].as_ptr(), "no copy");
    // The slice is the encoded record set: batch header then the two values.
    assert!(bytes.windows(5).any(|w| w == b"hello"));
    assert!(bytes.windows(5).any(|w| w == b"world"));
}

#[test]
fn wrong_outcome_count_writes_and_counts_nothing() {
    let mut guard = guard_with(vec![ReplicaRole::new("t", 0, ME, None)]);
    let spec = ProduceSpec {
        topics: vec![("t".into(), vec![(0, one_record()), (0, one_record())])],
        ..Default::default()
    };
    let frame = spec.frame(25, 1);
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = guard
        .judge(&frame)
        .unwrap()
        .respond([Ok(1)], &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        RespondError::OutcomeCount {
            accepted: 2,
            given: 1
        }
    );
    let err = guard
        .judge(&frame)
        .unwrap()
        .respond([Ok(1), Ok(2), Ok(3)], &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        RespondError::OutcomeCount {
            accepted: 2,
            given: 3
        }
    );
    assert_eq!(&out[..], b"keep");
    assert_eq!(guard.stats().snapshot(), StatsSnapshot::default());
}

#[test]
fn stats_count_outcomes_and_malformed_frames() {
    let mut guard = guard_with(vec![
        ReplicaRole::new("t", 0, ME, None),
        ReplicaRole::new("h", 0, ME, Some(home("edge1", false))),
        ReplicaRole::new("r", 0, ME, Some(remote("home", true))),
    ]);
    let spec = ProduceSpec {
        topics: vec![
            (
                "t".into(),
                vec![(0, one_record()), (0, one_record()), (5, one_record())],
            ),
            ("h".into(), vec![(0, one_record())]),
            ("r".into(), vec![(0, one_record()), (0, one_record())]),
        ],
        ..Default::default()
    };
    let frame = spec.frame(25, 1);
    guard
        .judge(&frame)
        .unwrap()
        .respond(
            [Ok(0), Err(ErrorCode::MessageTooLarge)],
            &mut BytesMut::new(),
        )
        .unwrap();
    assert!(guard.judge(&frame.slice(..frame.len() - 1)).is_err());
    assert!(guard.judge(&Bytes::from_static(b"\x00")).is_err());
    let stats = guard.stats().snapshot();
    assert_eq!(
        stats,
        StatsSnapshot {
            accepted: 2,
            not_leader: 1,
            from_home: 1,
            remote_target: 2,
            storage_failed: 1,
            malformed: 2
        }
    );
    assert_eq!(
        stats.rejected_by_code(),
        [
            (ErrorCode::NotLeaderForPartition, 1),
            (ErrorCode::MirrorProduceFromHome, 1),
            (ErrorCode::MirrorProduceFromRemoteNotAllowed, 2)
        ]
    );
}

/// A request is judged against the snapshot taken when it was parsed; the
/// next request sees the new role at once.
#[test]
fn one_snapshot_per_request_and_the_next_request_sees_changes() {
    let mut guard = guard_with(vec![ReplicaRole::new(
        "m",
        0,
        ME,
        Some(home("edge1", true)),
    )]);
    let spec = ProduceSpec {
        topics: vec![("m".into(), vec![(0, one_record())])],
        ..Default::default()
    };
    let frame = spec.frame(25, 1);
    let table = guard.table().clone();
    let pinned = guard.judge(&frame).unwrap();
    table.apply(RoleUpdate::Changes {
        epoch: 2,
        changes: vec![RoleChange::Upsert(ReplicaRole::new(
            "m",
            0,
            ME,
            Some(home("edge1", false)),
        ))],
    });
    assert!(pinned.verdicts().all(|v| v.verdict.is_accept()));
    // The pinned judgement ends here; the next request loads the new snapshot.
    let next = guard.judge(&frame).unwrap();
    assert!(
        next.verdicts()
            .all(|v| v.verdict.rejection() == Some(ErrorCode::MirrorProduceFromHome))
    );
}
