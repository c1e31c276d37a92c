//! Differential tests against the oracle, `fluvio-spu-schema` 0.50.1.
//!
//! Requests are generated as Fluvio values and encoded with Fluvio's encoder;
//! our view must see exactly what Fluvio's decoder sees. Responses are built
//! both ways and must be byte-identical, at every api_version from 0 to 25.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Duration;

use bytes::BytesMut;
use fluvio_protocol::api::RequestKind;
use fluvio_protocol::link::ErrorCode as FluvioCode;
use fluvio_protocol::link::versions::{ApiVersionKey as FluvioKey, ApiVersionsResponse};
use fluvio_protocol::record::{RawRecords, RecordSet, ReplicaKey};
use fluvio_protocol::{Decoder, Encoder};
use fluvio_smartmodule::dataplane::smartmodule::{Lookback, SmartModuleExtraParams};
use fluvio_spu_schema::produce::{
    DefaultProduceRequest, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use fluvio_spu_schema::server::smartmodule::{
    SmartModuleContextData, SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind,
};
use mg_testkit::ProduceSpec;
use mg_wire::{
    ApiVersionKey, ErrorCode, Isolation, ProduceRequest, ProduceResponseWriter, write_api_versions,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- strategies

fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9._-]{0,16}",
        1 => "\\PC{0,6}", // any printable unicode
    ]
}

fn entry() -> impl Strategy<Value = (u32, Vec<Vec<Vec<u8>>>)> {
    (
        prop_oneof![3 => 0u32..4, 1 => any::<u32>()], // small range: duplicates
        prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..4),
            0..=3,
        ),
    )
}

fn fluvio_string() -> impl Strategy<Value = String> {
    "[a-z0-9]{0,8}"
}

fn smartmodule() -> impl Strategy<Value = SmartModuleInvocation> {
    let wasm = prop_oneof![
        fluvio_string().prop_map(SmartModuleInvocationWasm::Predefined),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(SmartModuleInvocationWasm::AdHoc),
    ];
    let context = prop_oneof![
        Just(SmartModuleContextData::None),
        prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|accumulator| SmartModuleContextData::Aggregate { accumulator }),
        fluvio_string().prop_map(SmartModuleContextData::Join),
        (fluvio_string(), fluvio_string()).prop_map(|(topic, derivedstream)| {
            SmartModuleContextData::JoinStream {
                topic,
                derivedstream,
            }
        }),
    ];
    let kind = prop_oneof![
        Just(SmartModuleKind::Filter),
        Just(SmartModuleKind::Map),
        Just(SmartModuleKind::ArrayMap),
        Just(SmartModuleKind::FilterMap),
        prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|accumulator| SmartModuleKind::Aggregate { accumulator }),
        fluvio_string().prop_map(SmartModuleKind::Join),
        (fluvio_string(), fluvio_string()).prop_map(|(topic, derivedstream)| {
            SmartModuleKind::JoinStream {
                topic,
                derivedstream,
            }
        }),
        context.prop_map(SmartModuleKind::Generic),
    ];
    let lookback = prop::option::of((
        any::<u64>(),
        prop::option::of((any::<u32>(), 0u32..1_000_000_000)),
    ))
    .prop_map(|l| {
        l.map(|(last, age)| Lookback {
            last,
            age: age.map(|(s, n)| Duration::new(u64::from(s), n)),
        })
    });
    let params = (
        prop::collection::btree_map(fluvio_string(), fluvio_string(), 0..3),
        lookback,
    )
        .prop_map(|(map, lookback): (BTreeMap<String, String>, _)| {
            SmartModuleExtraParams::new(map, lookback)
        });
    (wasm, kind, params, prop::option::of(fluvio_string())).prop_map(
        |(wasm, kind, params, name)| SmartModuleInvocation {
            wasm,
            kind,
            params,
            name,
        },
    )
}

fn produce_spec() -> impl Strategy<Value = ProduceSpec> {
    (
        prop::option::of(fluvio_string()),
        any::<bool>(),
        0u64..=i32::MAX as u64,
        prop::collection::vec(
            (topic_name(), prop::collection::vec(entry(), 0..=16)),
            0..=8,
        ),
        prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(smartmodule(), 1..3)],
    )
        .prop_map(
            |(transactional_id, read_committed, timeout_ms, topics, smartmodules)| ProduceSpec {
                transactional_id,
                read_committed,
                timeout_ms,
                topics,
                smartmodules,
            },
        )
}

// ------------------------------------------------------------------ requests

/// What Fluvio's decoder makes of a frame.
fn fluvio_decode(frame: &[u8], body_start: usize, version: i16) -> DefaultProduceRequest {
    let mut cursor = Cursor::new(&frame[body_start..]);
    let request = DefaultProduceRequest::decode_from(&mut cursor, version).expect("fluvio decodes");
    assert_eq!(
        cursor.position() as usize,
        frame.len() - body_start,
        "fluvio consumed the body"
    );
    request
}

/// The bytes of a decoded record set, as they sat on the wire (without the length).
fn record_bytes(set: &RecordSet<RawRecords>, version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    set.encode(&mut out, version).expect("encodes");
    out.split_off(4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn view_sees_what_fluvio_decodes(spec in produce_spec(), version in 0i16..=25) {
        let frame = spec.frame(version, 7);
        let (header, view) = ProduceRequest::parse(&frame).expect("our view parses fluvio's frame");
        prop_assert_eq!(header.api_key, 0);
        prop_assert_eq!(header.api_version, version);
        prop_assert_eq!(header.correlation_id, 7);
        prop_assert_eq!(header.client_id, "fluvio");

        let body_start = frame.len() - spec.to_fluvio().write_size(version);
        let theirs = fluvio_decode(&frame, body_start, version);

        prop_assert_eq!(view.transactional_id(), theirs.transactional_id.as_deref());
        prop_assert_eq!(
            view.isolation() == Isolation::ReadCommitted,
            theirs.isolation == fluvio_spu_schema::Isolation::ReadCommitted
        );
        prop_assert_eq!(view.timeout_ms() as u128, theirs.timeout.as_millis());
        prop_assert_eq!(view.smartmodule_count(), theirs.smartmodules.len());
        prop_assert_eq!(view.topic_count(), theirs.topics.len());
        prop_assert_eq!(
            view.entry_count(),
            theirs.topics.iter().map(|t| t.partitions.len()).sum::<usize>()
        );

        for (ours, theirs) in view.topics().zip(&theirs.topics) {
            prop_assert_eq!(ours.name(), theirs.name.as_str());
            prop_assert_eq!(ours.partition_count(), theirs.partitions.len());
            for (entry, their_entry) in ours.entries().zip(&theirs.partitions) {
                prop_assert_eq!(entry.partition, their_entry.partition_index);
                let expected = record_bytes(&their_entry.records, version);
                prop_assert_eq!(entry.records.as_slice(), expected.as_slice());
                // The records are a window on the frame, not a copy.
                let bytes = entry.records.to_bytes();
                prop_assert_eq!(
                    bytes.as_ptr(),
                    frame[entry.records.range()].as_ptr()
                );
            }
        }

        // Moving on from a topic, whether all, some or none of its entries
        // were read, lands on the topic that follows it.
        let topics: Vec<_> = view.topics().collect();
        prop_assert_eq!(
            view.first_topic().map(|t| t.name()),
            topics.first().map(|t| t.name())
        );
        for (i, topic) in topics.iter().enumerate() {
            for read in [0, topic.partition_count() / 2, topic.partition_count()] {
                let mut entries = topic.entries();
                entries.by_ref().take(read).for_each(drop);
                let next = entries.next_topic();
                prop_assert_eq!(next.as_ref().map(|t| t.name()), topics.get(i + 1).map(|t| t.name()));
                if let (Some(next), Some(expected)) = (next, topics.get(i + 1)) {
                    let ranges = |t: &mg_wire::Topic<'_>| {
                        t.entries().map(|e| (e.partition, e.records.range())).collect::<Vec<_>>()
                    };
                    prop_assert_eq!(ranges(&next), ranges(expected));
                }
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_a_typed_error(spec in produce_spec(), version in 0i16..=25, cut in any::<prop::sample::Index>()) {
        let frame = spec.frame(version, 1);
        let cut = cut.index(frame.len());
        let short = frame.slice(..cut);
        // A shorter frame never parses as the same request: either an error, or
        // (cut at a boundary a pre-v8 request may end on) a request with no
        // smartmodules tail.
        match ProduceRequest::parse(&short) {
            Err(_) => {}
            Ok((_, view)) => {
                prop_assert!(version < 8, "v{version} frame cut at {cut} of {} parsed", frame.len());
                prop_assert_eq!(view.smartmodule_count(), 0);
            }
        }
    }
}

// ----------------------------------------------------------------- responses

fn our_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::None),
        Just(ErrorCode::Other("invalid record batch: CRC-32C mismatch")),
        Just(ErrorCode::UnknownServerError),
        Just(ErrorCode::NotLeaderForPartition),
        any::<u64>().prop_map(|timeout_ms| ErrorCode::RequestTimedOut { timeout_ms }),
        Just(ErrorCode::MessageTooLarge),
        Just(ErrorCode::StorageError),
        Just(ErrorCode::PartitionFull),
        Just(ErrorCode::TopicNotFound),
        Just(ErrorCode::CompressionError),
        Just(ErrorCode::MirrorProduceFromHome),
        Just(ErrorCode::MirrorProduceFromRemoteNotAllowed),
    ]
}

/// The Fluvio value our code stands for, at partition `(topic, partition)`.
fn fluvio_code(code: ErrorCode, topic: &str, partition: u32) -> FluvioCode {
    match code {
        ErrorCode::None => FluvioCode::None,
        ErrorCode::Other(text) => FluvioCode::Other(text.to_string()),
        ErrorCode::UnknownServerError => FluvioCode::UnknownServerError,
        ErrorCode::NotLeaderForPartition => FluvioCode::NotLeaderForPartition,
        ErrorCode::RequestTimedOut { timeout_ms } => FluvioCode::RequestTimedOut {
            timeout_ms,
            kind: RequestKind::Produce,
        },
        ErrorCode::MessageTooLarge => FluvioCode::MessageTooLarge,
        ErrorCode::StorageError => FluvioCode::StorageError,
        ErrorCode::PartitionFull => FluvioCode::PartitionFull {
            replica_key: ReplicaKey::new(topic.to_string(), partition),
        },
        ErrorCode::TopicNotFound => FluvioCode::TopicNotFound,
        ErrorCode::CompressionError => FluvioCode::CompressionError,
        ErrorCode::MirrorProduceFromHome => FluvioCode::MirrorProduceFromHome,
        ErrorCode::MirrorProduceFromRemoteNotAllowed => {
            FluvioCode::MirrorProduceFromRemoteNotAllowed
        }
        other => panic!("unmapped code {other:?}"),
    }
}

type ResponseSpec = Vec<(String, Vec<(u32, ErrorCode, i64)>)>;

fn response_spec() -> impl Strategy<Value = ResponseSpec> {
    prop::collection::vec(
        (
            topic_name(),
            prop::collection::vec((any::<u32>(), our_code(), any::<i64>()), 0..=16),
        ),
        0..=8,
    )
}

fn fluvio_response_frame(spec: &ResponseSpec, correlation_id: i32, version: i16) -> Vec<u8> {
    let response = ProduceResponse {
        responses: spec
            .iter()
            .map(|(name, parts)| TopicProduceResponse {
                name: name.clone(),
                partitions: parts
                    .iter()
                    .map(|(partition, code, base_offset)| PartitionProduceResponse {
                        partition_index: *partition,
                        error_code: fluvio_code(*code, name, *partition),
                        base_offset: *base_offset,
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
        throttle_time_ms: 0,
    };
    let mut body = Vec::new();
    correlation_id.encode(&mut body, version).unwrap();
    response.encode(&mut body, version).unwrap();
    assert_eq!(body.len(), 4 + response.write_size(version));
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn produce_response_is_byte_identical(spec in response_spec(), version in 0i16..=25, corr in any::<i32>()) {
        let mut out = BytesMut::new();
        let mut writer = ProduceResponseWriter::begin(&mut out, corr, version, spec.len());
        for (name, parts) in &spec {
            writer.topic(name, parts.len());
            for (partition, code, base_offset) in parts {
                writer.partition(name, *partition, *code, *base_offset);
            }
        }
        let len = writer.finish();
        prop_assert_eq!(len, out.len());
        prop_assert_eq!(&out[..], &fluvio_response_frame(&spec, corr, version)[..]);
    }

    #[test]
    fn api_versions_response_is_byte_identical(
        keys in prop::collection::vec((0u16..=i16::MAX as u16, any::<i16>(), any::<i16>()), 0..12),
        semver in (0u64..100, 0u64..100, 0u64..100),
        version in 0i16..=25,
        corr in any::<i32>(),
    ) {
        let platform = format!("{}.{}.{}", semver.0, semver.1, semver.2);
        let ours: Vec<ApiVersionKey> = keys
            .iter()
            .map(|&(api_key, min_version, max_version)| ApiVersionKey { api_key, min_version, max_version })
            .collect();
        let mut out = BytesMut::new();
        write_api_versions(&mut out, corr, ErrorCode::None, &ours, &platform);

        let theirs = ApiVersionsResponse {
            error_code: FluvioCode::None,
            api_keys: keys
                .iter()
                .map(|&(api_key, min_version, max_version)| FluvioKey { api_key: api_key as i16, min_version, max_version })
                .collect(),
            platform_version: semver::Version::parse(&platform).unwrap().into(),
        };
        let mut body = Vec::new();
        corr.encode(&mut body, version).unwrap();
        theirs.encode(&mut body, version).unwrap();
        let mut expected = (body.len() as i32).to_be_bytes().to_vec();
        expected.extend(body);
        prop_assert_eq!(&out[..], &expected[..]);

        // And the official decoder reads it back.
        let mut cursor = Cursor::new(&out[8..]);
        let decoded = ApiVersionsResponse::decode_from(&mut cursor, version).unwrap();
        prop_assert_eq!(decoded, theirs);
    }
}

#[test]
fn error_code_text_matches_fluvio() {
    for code in [
        ErrorCode::Other("invalid record batch: truncated"),
        ErrorCode::UnknownServerError,
        ErrorCode::NotLeaderForPartition,
        ErrorCode::RequestTimedOut { timeout_ms: 1500 },
        ErrorCode::MessageTooLarge,
        ErrorCode::StorageError,
        ErrorCode::PartitionFull,
        ErrorCode::TopicNotFound,
        ErrorCode::CompressionError,
        ErrorCode::MirrorProduceFromHome,
        ErrorCode::MirrorProduceFromRemoteNotAllowed,
    ] {
        let theirs = fluvio_code(code, "t", 0);
        assert_eq!(code.to_string(), theirs.to_string(), "{code:?}");
        let mut bytes = Vec::new();
        theirs.encode(&mut bytes, 0).unwrap();
        assert_eq!(
            i16::from_be_bytes([bytes[0], bytes[1]]),
            code.tag(),
            "{code:?}"
        );
    }
    assert_eq!(
        ErrorCode::MirrorProduceFromHome.to_string(),
        "produce from home is not allowed"
    );
}
