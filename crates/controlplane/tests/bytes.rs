//! The control-plane types produce Fluvio's bytes: the probe-verified
//! vectors of the wire reference (§5.3), and frames laid out by its rules.

use fluvio_controlplane_metadata::partition::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig,
};
use fluvio_protocol::record::ReplicaKey;
use fluvio_protocol::{Decoder, Encoder};
use mg_controlplane::keys::CORRELATION_ID;
use mg_controlplane::*;
use mg_transport::{BodyError, RequestHeader, decode_body, encode_response};

fn encode_request<T: Encoder>(
    key: u16,
    version: i16,
    client_id: &str,
    body: &T,
) -> mg_transport::envelope::EncodeResult {
    mg_transport::encode_request(key, version, CORRELATION_ID, client_id, body)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn encoded<T: Encoder>(value: &T, version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out, version).unwrap();
    assert_eq!(out.len(), value.write_size(version));
    out
}

fn home() -> PartitionMirrorConfig {
    PartitionMirrorConfig::Home(HomePartitionConfig {
        remote_cluster: "edge1".into(),
        remote_replica: "t1-0".into(),
        source: true,
    })
}

fn remote() -> PartitionMirrorConfig {
    PartitionMirrorConfig::Remote(RemotePartitionConfig {
        home_cluster: "home".into(),
        home_spu_key: "k".into(),
        home_spu_id: 5001,
        home_spu_endpoint: "h:9005".into(),
        target: true,
    })
}

/// Below v18 the direction flags are not on the wire at all.
#[test]
fn mirror_configs_carry_direction_flags_from_v18() {
    assert_eq!(
        encoded(&home(), 17),
        hex("01 0005 6564676531 0004 74312d30")
    );
    assert_eq!(
        encoded(&home(), 18),
        hex("01 0005 6564676531 0004 74312d30 01")
    );
    assert_eq!(
        encoded(&remote(), 17),
        hex("00 0004 686f6d65 0001 6b 00001389 0006 683a39303035")
    );
    assert_eq!(
        encoded(&remote(), 18),
        hex("00 0004 686f6d65 0001 6b 00001389 0006 683a39303035 01")
    );
    // And they decode as false: a target decoded at v17 looks writable.
    let v17 = encoded(&remote(), 17);
    let decoded = PartitionMirrorConfig::decode_from(&mut std::io::Cursor::new(&v17), 17).unwrap();
    assert!(matches!(decoded, PartitionMirrorConfig::Remote(r) if !r.target));
}

fn replica() -> Replica {
    Replica {
        id: ReplicaKey::new("t", 0u32),
        leader: 5001,
        replicas: vec![5001],
        ..Default::default()
    }
}

#[test]
fn update_replica_frames() {
    let sync = UpdateReplicaRequest::sync(1, vec![replica()]);
    let frame = encode_request(SpuKey::UpdateReplica.code(), 18, "sc", &sync).unwrap();
    assert_eq!(
        frame.to_vec(),
        hex("00000035 03ea 0012 00000001 0002 7363
             0000000000000001 00000000 00000001
             0001 74 00000000 00001389 00000001 00001389
             00 00 00 00 04 00")
    );
    let (header, body) = RequestHeader::parse(&frame[4..]).unwrap();
    assert_eq!(
        (
            header.api_key,
            header.api_version,
            header.correlation_id,
            header.client_id
        ),
        (1002, 18, 1, "sc")
    );
    let back: UpdateReplicaRequest = decode_body(&frame[4..], body, 18, "UpdateReplica").unwrap();
    assert_eq!(back, sync);

    let change = UpdateReplicaRequest::changes(
        2,
        vec![Message {
            header: MsgType::UPDATE,
            content: replica(),
        }],
    );
    let frame = encode_request(SpuKey::UpdateReplica.code(), 18, "sc", &change).unwrap();
    assert_eq!(&frame[..4], &hex("00000036")[..]);
}

#[test]
fn registration_and_heartbeat_frames() {
    let register = encode_request(
        ScKey::RegisterSpu.code(),
        0,
        "spu: 5001",
        &RegisterSpuRequest { spu: 5001 },
    )
    .unwrap();
    assert_eq!(
        register.to_vec(),
        hex("00000017 07d0 0000 00000001 0009 7370753a2035303031 00001389")
    );
    let ok = encode_response(1, 0, &RegisterSpuResponse::default()).unwrap();
    assert_eq!(ok.to_vec(), hex("00000007 00000001 0000 00"));
    let heartbeat = encode_request(
        ScKey::UpdateLrs.code(),
        1,
        "dummy",
        &UpdateLrsRequest::default(),
    )
    .unwrap();
    assert_eq!(
        heartbeat.to_vec(),
        hex("0000001b 07d1 0001 00000001 0005 64756d6d79 00000000 00000000 00000000")
    );
}

#[test]
fn a_frame_with_trailing_bytes_is_refused() {
    let mut frame = encode_request(
        ScKey::RegisterSpu.code(),
        0,
        "spu: 1",
        &RegisterSpuRequest { spu: 1 },
    )
    .unwrap()
    .to_vec();
    frame.push(0);
    let (_, body) = RequestHeader::parse(&frame[4..]).unwrap();
    assert!(matches!(
        decode_body::<RegisterSpuRequest>(&frame[4..], body, 0, "RegisterSpu"),
        Err(BodyError::Trailing { count: 1, .. })
    ));
}

/// mirror-guard's extension stays out of Fluvio's versions: at v18 a
/// replica's bytes are the same whatever its mirror control holds (so a
/// Fluvio SPU reads exactly what Fluvio's SC sends), and only v19 appends
/// the control (epoch u32, paused, ended).
#[test]
fn mirror_controls_travel_only_at_v19() {
    let plain = replica();
    let controlled = Replica {
        control: operate::MirrorControl {
            epoch: 7,
            paused: true,
            ended: false,
        },
        ..replica()
    };
    assert_eq!(encoded(&controlled, 18), encoded(&plain, 18));
    let mut v19 = encoded(&plain, 18);
    v19.extend_from_slice(&hex("00000007 01 00"));
    assert_eq!(encoded(&controlled, 19), v19);
    let back = Replica::decode_from(&mut std::io::Cursor::new(&v19), 19).unwrap();
    assert_eq!(back, controlled);
    let at_18 = Replica::decode_from(&mut std::io::Cursor::new(encoded(&plain, 18)), 18).unwrap();
    assert_eq!(at_18.control, operate::MirrorControl::default());
}

/// Likewise for the link report in a status report: absent at v1 (Fluvio's
/// SC decodes our v1 reports), an option at v2.
#[test]
fn link_reports_travel_only_at_lrs_v2() {
    let plain = LrsRequest {
        id: ReplicaKey::new("t", 0u32),
        base_offset: 3,
        ..Default::default()
    };
    let report = operate::MirrorLinkReport {
        epoch: 2,
        connected: true,
        lag: 0,
        records: 10,
        bytes: 640,
        last_seen_ms: 1_700_000_000_000,
        refused: 1,
    };
    let reported = LrsRequest {
        mirror: Some(report),
        ..plain.clone()
    };
    assert_eq!(encoded(&reported, 1), encoded(&plain, 1));
    let v2 = encoded(&reported, 2);
    assert_eq!(v2.len(), encoded(&plain, 1).len() + 1 + 4 + 1 + 8 * 4 + 8);
    let back = LrsRequest::decode_from(&mut std::io::Cursor::new(&v2), 2).unwrap();
    assert_eq!(back, reported);
}
