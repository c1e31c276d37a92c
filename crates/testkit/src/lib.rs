//! # mg-testkit: fixtures built with Fluvio's own encoders
//!
//! Tests and benchmarks need frames exactly as a Fluvio 0.50 client sends
//! them. Rather than hand-assembling bytes, this crate builds the values with
//! `fluvio-spu-schema` / `fluvio-protocol` 0.50.1 and encodes them with their
//! encoders, so every fixture is, by construction, what the oracle produces.
//!
//! - [`batch`] / [`record_set`]: record batches with given values.
//! - [`ProduceSpec`]: a produce request described as plain data, turned into
//!   Fluvio's [`DefaultProduceRequest`] and into frame bytes.
//! - [`frame`] / [`framed`]: header + body, without or with the size prefix.
//! - [`sized_request`]: the benchmark shape (one topic, N entries, one batch of
//!   a given payload size each).
//! - [`etcd`]: a real etcd on loopback for the tests of the etcd store.
//! - [`relay`]: a TCP relay that can lose a server's replies.
//! - [`port_base`]: blocks of free loopback ports for the servers a test starts.

pub mod etcd;
pub mod relay;

use bytes::Bytes;
use fluvio_protocol::Encoder;
use fluvio_protocol::api::{RequestHeader, RequestMessage};
use fluvio_protocol::record::{Batch, RawRecords, Record, RecordSet};
use fluvio_spu_schema::produce::{
    DefaultProduceRequest, PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fluvio_spu_schema::server::smartmodule::SmartModuleInvocation;

pub use fluvio_controlplane_metadata::partition::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig,
};
pub use fluvio_spu_schema::Isolation;

/// A batch holding one record per value, encoded the way the client does.
pub fn batch(values: &[&[u8]]) -> Batch<RawRecords> {
    let records: Vec<Record> = values.iter().map(|v| Record::new(v.to_vec())).collect();
    let mut batch = Batch::from(records);
    batch.header.first_timestamp = 1_700_000_000_000;
    batch.header.max_time_stamp = 1_700_000_000_000;
    Batch::<RawRecords>::try_from(batch).expect("uncompressed batch encodes")
}

/// A record set of the given batches.
pub fn record_set(batches: Vec<Batch<RawRecords>>) -> RecordSet<RawRecords> {
    batches
        .into_iter()
        .fold(RecordSet::default(), |set, batch| set.add(batch))
}

/// A batch as plain data: one value per record.
pub type BatchSpec = Vec<Vec<u8>>;
/// A partition entry as plain data: its index and its batches.
pub type EntrySpec = (u32, Vec<BatchSpec>);
/// A topic as plain data: its name and its partition entries.
pub type TopicSpec = (String, Vec<EntrySpec>);

/// A produce request as plain data.
#[derive(Debug, Default)]
pub struct ProduceSpec {
    /// `transactional_id`.
    pub transactional_id: Option<String>,
    /// Read committed (acks = -1) when true.
    pub read_committed: bool,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// Topics, in request order.
    pub topics: Vec<TopicSpec>,
    /// Smartmodule invocations.
    pub smartmodules: Vec<SmartModuleInvocation>,
}

impl ProduceSpec {
    /// Fluvio's request value for this spec.
    pub fn to_fluvio(&self) -> DefaultProduceRequest {
        ProduceRequest {
            transactional_id: self.transactional_id.clone(),
            isolation: if self.read_committed {
                Isolation::ReadCommitted
            } else {
                Isolation::ReadUncommitted
            },
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            topics: self
                .topics
                .iter()
                .map(|(name, entries)| TopicProduceData {
                    name: name.clone(),
                    partitions: entries
                        .iter()
                        .map(|(partition, batches)| PartitionProduceData {
                            partition_index: *partition,
                            records: record_set(
                                batches
                                    .iter()
                                    .map(|values| {
                                        let values: Vec<&[u8]> =
                                            values.iter().map(Vec::as_slice).collect();
                                        batch(&values)
                                    })
                                    .collect(),
                            ),
                        })
                        .collect(),
                    data: Default::default(),
                })
                .collect(),
            smartmodules: self.smartmodules.clone(),
            data: Default::default(),
        }
    }

    /// The frame (header + body, no size prefix) at `version`.
    pub fn frame(&self, version: i16, correlation_id: i32) -> Bytes {
        frame(0, version, correlation_id, "fluvio", &self.to_fluvio())
    }
}

/// Header + body of a request, as fluvio encodes it, without the size prefix.
pub fn frame<R: Encoder>(
    api_key: u16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Bytes {
    let mut header = RequestHeader::new(api_key);
    header.set_api_version(version);
    header.set_correlation_id(correlation_id);
    header.set_client_id(client_id);
    let mut out = Vec::new();
    header.encode(&mut out, 0).expect("header encodes");
    body.encode(&mut out, version).expect("body encodes");
    Bytes::from(out)
}

/// The same frame with its i32 size prefix, as it crosses the socket.
pub fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// A Fluvio request message over the same frame, for the reference decode path.
pub fn request_message(request: DefaultProduceRequest) -> RequestMessage<DefaultProduceRequest> {
    RequestMessage::new_request(request)
}

/// The benchmark shape: one topic, `entries` partition entries (indexes
/// `0..entries`), each one batch with one record of `payload` bytes.
pub fn sized_request(topic: &str, entries: usize, payload: usize) -> Bytes {
    let value = vec![0xA5u8; payload];
    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(
            topic.to_string(),
            (0..entries as u32)
                .map(|p| (p, vec![vec![value.clone()]]))
                .collect(),
        )],
        ..Default::default()
    };
    spec.frame(25, 1)
}

/// A Home mirror config.
pub fn home(remote: &str, source: bool) -> PartitionMirrorConfig {
    PartitionMirrorConfig::Home(HomePartitionConfig {
        remote_cluster: remote.into(),
        remote_replica: format!("{remote}-0"),
        source,
    })
}

/// A Remote mirror config.
pub fn remote(home: &str, target: bool) -> PartitionMirrorConfig {
    PartitionMirrorConfig::Remote(RemotePartitionConfig {
        home_cluster: home.into(),
        home_spu_key: format!("{home}-spu"),
        home_spu_id: 5001,
        home_spu_endpoint: "127.0.0.1:9010".into(),
        target,
    })
}

/// The bytes of a record set (batches back to back, no length prefix), each
/// batch holding the given values: what a produce entry carries.
pub fn batch_bytes(batches: &[&[&[u8]]]) -> Vec<u8> {
    let set = record_set(batches.iter().map(|values| batch(values)).collect());
    let mut out = Vec::new();
    set.encode(&mut out, 0).expect("record set encodes");
    out.split_off(4)
}

/// Copies a directory tree (fixtures into a test's temporary directory).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

/// Produces one record to `topic`/`partition` straight to an SPU at
/// `addr`, over a plain blocking socket, and returns the error code of the
/// answer's first entry (0 when accepted).
pub fn produce_code(addr: &str, topic: &str, partition: u32) -> i16 {
    produce_answer(addr, topic, partition).0
}

/// As [`produce_code`], with the entry's base offset: (code, offset).
pub fn produce_answer(addr: &str, topic: &str, partition: u32) -> (i16, i64) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the SPU");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("a read timeout");
    stream
        .write_all(&one_record_request(topic, partition, 1))
        .expect("send");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("an answer");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("the whole answer");
    let (_, code, offset) = first_entry(&body);
    (code, offset)
}

/// A framed Produce request (v25, acks = 1) of one record `x` to
/// `topic`/`partition`, as it crosses the socket.
pub fn one_record_request(topic: &str, partition: u32, correlation_id: i32) -> Vec<u8> {
    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(topic.into(), vec![(partition, vec![vec![b"x".to_vec()]])])],
        ..Default::default()
    };
    framed(&spec.frame(25, correlation_id))
}

/// The first entry of a ProduceResponse body (the bytes after the size
/// prefix): (correlation id, error code, base offset).
pub fn first_entry(body: &[u8]) -> (i32, i16, i64) {
    // correlation(4) topics(4) name(2 + n) partitions(4) index(4) code(2) offset(8)
    let word = |at: usize| [body[at], body[at + 1]];
    let correlation = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
    let at = 10 + u16::from_be_bytes(word(8)) as usize + 8;
    let code = i16::from_be_bytes(word(at));
    let offset = i64::from_be_bytes(body[at + 2..at + 10].try_into().expect("8 bytes"));
    (correlation, code, offset)
}

/// The first of a run of [`PORT_BLOCK`] free local ports, for tests and
/// benches that start servers on consecutive ports.
pub fn port_base() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Blocks of PORT_BLOCK ports below Linux's ephemeral range (32768 and
    // up), where outgoing connections take their ports: a cluster's ports
    // follow its base, and one taken by a client socket meanwhile would
    // keep a process from binding it. Each call in a process takes the next
    // block from a start that differs by process, and a block is used only
    // if every port in it binds now.
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = (32_000 - FIRST) / PORT_BLOCK as u32;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let _ = NEXT.compare_exchange(u32::MAX, seed % BLOCKS, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..BLOCKS {
        let block = NEXT.fetch_add(1, Ordering::SeqCst) % BLOCKS;
        let base = (FIRST + block * PORT_BLOCK as u32) as u16;
        let free = (base..base + PORT_BLOCK)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of {PORT_BLOCK} free ports below 32000");
}

/// Ports [`port_base`] keeps free after the base it returns: enough for a
/// local cluster of a few SPUs (public, private, SPUs, metrics).
pub const PORT_BLOCK: u16 = 16;
