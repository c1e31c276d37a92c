//! Every class of malformed frame gets its own typed error, and the
//! reference vectors of the wire spec decode and encode exactly.

use bytes::{BufMut, Bytes, BytesMut};
use mg_wire::{
    ErrorCode, Field, Isolation, ProduceRequest, ProduceResponseWriter, WireError, frame_size,
};

/// The §8.3 ProduceRequest of the wire reference (api_version 25, correlation
/// 7, topic "t1", partitions 0 and 1), without its size prefix.
const SPEC_FRAME: &str = "\
00000019000000070006666c7576696f000001000005dc00000001000274310000000200000000000000\
5800000000000000010000004cffffffff027cd6fff20000000000010000018bcfe568000000018bcfe5\
6801ffffffffffffffffffffffffffff000000021c00000001046b310a68656c6c6f0016000202000a77\
6f726c6400000000010000004700000000000000000000003bffffffff02228943c10000000000000000\
018bcfe568640000018bcfe56864ffffffffffffffffffffffffffff0000000112000000000661626300\
00000000";

fn hex(s: &str) -> Bytes {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn reference_request_vector() {
    let frame = hex(SPEC_FRAME);
    assert_eq!(frame.len(), 214);
    let (header, view) = ProduceRequest::parse(&frame).unwrap();
    assert_eq!(
        (header.api_key, header.api_version, header.correlation_id),
        (0, 25, 7)
    );
    assert_eq!(header.client_id, "fluvio");
    assert_eq!(view.transactional_id(), None);
    assert_eq!(view.isolation(), Isolation::ReadUncommitted);
    assert_eq!(view.timeout_ms(), 1500);
    let topics: Vec<_> = view.topics().collect();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].name(), "t1");
    let entries: Vec<_> = topics[0].entries().collect();
    assert_eq!(entries.len(), 2);
    // Offsets are into the frame, which here starts after the size prefix.
    assert_eq!(
        (entries[0].partition, entries[0].records.range()),
        (0, 0x2b..0x83)
    );
    assert_eq!(
        (entries[1].partition, entries[1].records.range()),
        (1, 0x8b..0xd2)
    );
    assert_eq!(view.smartmodule_count(), 0);
}

#[test]
fn reference_response_vectors() {
    let write = |version| {
        let mut out = BytesMut::new();
        let mut w = ProduceResponseWriter::begin(&mut out, 7, version, 1);
        w.topic("t1", 2);
        w.partition("t1", 0, ErrorCode::MirrorProduceFromHome, 0);
        w.partition("t1", 1, ErrorCode::None, 42);
        w.finish();
        out
    };
    let v25 = hex(
        "00000050 00000007 00000001 00027431 00000002 00000000 2afb 0000000000000000
         0000000000000000 0000000000000000 00000001 0000 000000000000002a
         0000000000000000 0000000000000000 00000000",
    );
    assert_eq!(&write(25)[..], &v25[..]);
    let v0 = hex(
        "0000002c 00000007 00000001 00027431 00000002 00000000 2afb 0000000000000000
         00000001 0000 000000000000002a",
    );
    assert_eq!(&write(0)[..], &v0[..]);
}

/// A hand-assembled produce frame, so each test can break one field.
#[derive(Clone)]
struct Raw {
    api_key: u16,
    version: i16,
    client_id: Vec<u8>,
    txn_tag: u8,
    timeout: i32,
    topic_count: Option<i32>,
    topic_name: Vec<u8>,
    partition_count: Option<i32>,
    records_len: Option<i32>,
    records: Vec<u8>,
    smartmodules: Vec<u8>,
    trailer: Vec<u8>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            api_key: 0,
            version: 25,
            client_id: b"fluvio".to_vec(),
            txn_tag: 0,
            timeout: 1500,
            topic_count: None,
            topic_name: b"t1".to_vec(),
            partition_count: None,
            records_len: None,
            records: vec![0xAB; 10],
            smartmodules: vec![0, 0, 0, 0],
            trailer: vec![],
        }
    }
}

impl Raw {
    fn bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u16(self.api_key);
        b.put_i16(self.version);
        b.put_i32(1);
        b.put_u16(self.client_id.len() as u16);
        b.put_slice(&self.client_id);
        b.put_u8(self.txn_tag);
        b.put_i16(1);
        b.put_i32(self.timeout);
        b.put_i32(self.topic_count.unwrap_or(1));
        b.put_u16(self.topic_name.len() as u16);
        b.put_slice(&self.topic_name);
        b.put_i32(self.partition_count.unwrap_or(1));
        b.put_u32(0);
        b.put_i32(self.records_len.unwrap_or(self.records.len() as i32));
        b.put_slice(&self.records);
        b.put_slice(&self.smartmodules);
        b.put_slice(&self.trailer);
        b.freeze()
    }

    fn parse(&self) -> Result<(), WireError> {
        ProduceRequest::parse(&self.bytes()).map(|_| ())
    }
}

#[test]
fn well_formed_baseline_parses() {
    let frame = Raw::default().bytes();
    let (_, view) = ProduceRequest::parse(&frame).unwrap();
    let entry = view.topics().next().unwrap().entries().next().unwrap();
    assert_eq!(entry.records.as_slice(), &[0xAB; 10]);
}

#[test]
fn truncated_header() {
    let frame = Raw::default().bytes();
    for (cut, field) in [
        (0, Field::ApiKey),
        (3, Field::ApiVersion),
        (6, Field::CorrelationId),
        (9, Field::ClientId),
    ] {
        let err = ProduceRequest::parse(&frame.slice(..cut)).unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { field: f, .. } if f == field),
            "cut at {cut}: {err:?}"
        );
    }
    // The client id's length says 6 but only 2 bytes follow.
    let err = ProduceRequest::parse(&frame.slice(..12)).unwrap_err();
    assert_eq!(
        err,
        WireError::LengthOutOfBounds {
            field: Field::ClientId,
            len: 6,
            available: 2
        }
    );
}

#[test]
fn unexpected_api_key() {
    let raw = Raw {
        api_key: 1,
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::UnexpectedApiKey {
            expected: 0,
            found: 1
        })
    );
}

#[test]
fn unsupported_versions() {
    for version in [-1, 26, i16::MAX] {
        let raw = Raw {
            version,
            ..Raw::default()
        };
        assert_eq!(
            raw.parse(),
            Err(WireError::UnsupportedVersion {
                api_key: 0,
                version
            })
        );
    }
}

#[test]
fn lengths_pointing_outside_the_frame() {
    let raw = Raw {
        records_len: Some(1_000_000),
        ..Raw::default()
    };
    assert!(matches!(
        raw.parse(),
        Err(WireError::LengthOutOfBounds {
            field: Field::Records,
            len: 1_000_000,
            ..
        })
    ));
    let raw = Raw::default();
    let mut frame = BytesMut::from(&raw.bytes()[..]);
    // The topic name's length: after the 16-byte header, the transactional id
    // tag, acks, timeout and topic count.
    let name_at = 16 + 1 + 2 + 4 + 4;
    frame[name_at..name_at + 2].copy_from_slice(&0x7000u16.to_be_bytes());
    assert!(matches!(
        ProduceRequest::parse(&frame.freeze()),
        Err(WireError::LengthOutOfBounds {
            field: Field::TopicName,
            len: 0x7000,
            ..
        })
    ));
    // More partitions declared than present.
    let raw = Raw {
        partition_count: Some(3),
        ..Raw::default()
    };
    assert!(matches!(
        raw.parse(),
        Err(WireError::Truncated {
            field: Field::PartitionIndex,
            ..
        }) | Err(WireError::Truncated {
            field: Field::Records,
            ..
        }) | Err(WireError::LengthOutOfBounds { .. })
    ));
}

#[test]
fn negative_lengths_and_counts() {
    let raw = Raw {
        records_len: Some(-1),
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::NegativeLength {
            field: Field::Records,
            len: -1
        })
    );
    let raw = Raw {
        topic_count: Some(-5),
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::NegativeLength {
            field: Field::TopicCount,
            len: -5
        })
    );
    let raw = Raw {
        partition_count: Some(i32::MIN),
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::NegativeLength {
            field: Field::PartitionCount,
            len: i32::MIN
        })
    );
    let raw = Raw {
        topic_name: vec![b'x'; 40_000],
        ..Raw::default()
    };
    assert!(matches!(
        raw.parse(),
        Err(WireError::NegativeLength {
            field: Field::TopicName,
            ..
        })
    ));
}

#[test]
fn negative_timeout() {
    let raw = Raw {
        timeout: -1,
        ..Raw::default()
    };
    assert_eq!(raw.parse(), Err(WireError::NegativeTimeout(-1)));
}

#[test]
fn invalid_utf8() {
    let raw = Raw {
        topic_name: vec![0xff, 0xfe],
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::InvalidUtf8 {
            field: Field::TopicName
        })
    );
    let raw = Raw {
        client_id: vec![0xc3],
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::InvalidUtf8 {
            field: Field::ClientId
        })
    );
}

#[test]
fn invalid_tags() {
    let raw = Raw {
        txn_tag: 2,
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::InvalidTag {
            field: Field::TransactionalId,
            tag: 2
        })
    );
    // One smartmodule whose wasm tag is 9.
    let raw = Raw {
        smartmodules: vec![0, 0, 0, 1, 9],
        ..Raw::default()
    };
    assert_eq!(
        raw.parse(),
        Err(WireError::InvalidTag {
            field: Field::SmartModule,
            tag: 9
        })
    );
}

#[test]
fn trailing_bytes() {
    let raw = Raw {
        trailer: vec![1, 2, 3],
        ..Raw::default()
    };
    assert_eq!(raw.parse(), Err(WireError::TrailingBytes { count: 3 }));
}

#[test]
fn missing_smartmodules_tail() {
    // Fluvio 0.50 always sends the tail; a pre-v8 client did not.
    let raw = Raw {
        smartmodules: vec![],
        ..Raw::default()
    };
    assert!(matches!(
        raw.parse(),
        Err(WireError::Truncated {
            field: Field::SmartModuleCount,
            ..
        })
    ));
    let raw = Raw {
        smartmodules: vec![],
        version: 7,
        ..Raw::default()
    };
    assert_eq!(raw.parse(), Ok(()));
}

#[test]
fn frame_size_prefix() {
    assert_eq!(frame_size(100i32.to_be_bytes(), 1000), Ok(100));
    assert_eq!(frame_size(1000i32.to_be_bytes(), 1000), Ok(1000));
    assert_eq!(
        frame_size(1001i32.to_be_bytes(), 1000),
        Err(WireError::FrameTooLarge {
            size: 1001,
            limit: 1000
        })
    );
    assert_eq!(
        frame_size((-4i32).to_be_bytes(), 1000),
        Err(WireError::NegativeFrameSize(-4))
    );
}

#[test]
fn errors_display_a_reason() {
    let text = WireError::LengthOutOfBounds {
        field: Field::Records,
        len: 9,
        available: 2,
    }
    .to_string();
    assert_eq!(
        text,
        "records length 9 exceeds the 2 bytes left in the frame"
    );
}
