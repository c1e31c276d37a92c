//! Shared set-up: a real SPU on loopback over a temporary data dir, with a
//! storage spy that records every call the SPU makes.

#![allow(dead_code)]

use std::io;
use std::sync::{Arc, Mutex};

use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use mg_roles::{ReplicaRole, RoleUpdate};
use mg_spu::{PartitionStore, ReadResult, RunningSpu, Spu, SpuConfig};
use mg_storage::{AppendError, Appended, LogConfig, Store};
use mg_wire::ErrorCode;

pub const SPU_ID: i32 = 5001;

/// What the SPU asked of storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Append(String, u32),
    Mirrored(String, u32),
    Sync(String, u32),
}

/// Wraps the real store and records every call.
pub struct Spy {
    pub inner: Store,
    pub calls: Mutex<Vec<Call>>,
}

impl Spy {
    pub fn appends_to(&self, topic: &str, partition: u32) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| **c == Call::Append(topic.into(), partition))
            .count()
    }
    pub fn mirrored_to(&self, topic: &str, partition: u32) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| **c == Call::Mirrored(topic.into(), partition))
            .count()
    }
    pub fn syncs_of(&self, topic: &str, partition: u32) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| **c == Call::Sync(topic.into(), partition))
            .count()
    }
}

impl PartitionStore for Spy {
    fn append(&self, topic: &str, partition: u32, records: &[u8]) -> Result<Appended, ErrorCode> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Append(topic.into(), partition));
        self.inner.append(topic, partition, records)
    }
    fn append_mirrored(
        &self,
        topic: &str,
        partition: u32,
        records: &[u8],
        epoch: u32,
    ) -> Result<Appended, AppendError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Mirrored(topic.into(), partition));
        self.inner.append_mirrored(topic, partition, records, epoch)
    }
    fn fence_mirror(&self, topic: &str, partition: u32, epoch: u32) -> io::Result<()> {
        self.inner.fence_mirror(topic, partition, epoch)
    }
    fn sync(&self, topic: &str, partition: u32) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Sync(topic.into(), partition));
        self.inner.sync(topic, partition)
    }
    fn read(&self, topic: &str, partition: u32, offset: i64, max: u64) -> io::Result<ReadResult> {
        self.inner.read(topic, partition, offset, max)
    }
    fn commits_every_append(&self) -> bool {
        PartitionStore::commits_every_append(&self.inner)
    }
    fn sync_pacing(&self) -> mg_storage::SyncPacing {
        self.inner.sync_pacing()
    }
}

/// Polls `condition` every 10 ms until it holds; fails after 20 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub struct TestSpu {
    pub spu: RunningSpu,
    pub spy: Arc<Spy>,
    pub dir: tempfile::TempDir,
}

impl TestSpu {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut SpuConfig)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), tune).await
    }

    /// Starts on the data of `dir` (a restart).
    pub async fn start_in(dir: tempfile::TempDir, tune: impl FnOnce(&mut SpuConfig)) -> Self {
        let mut config = SpuConfig::new(SPU_ID, dir.path());
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        tune(&mut config);
        let spy = Arc::new(Spy {
            inner: Store::new(dir.path(), LogConfig { ..config.log }).unwrap(),
            calls: Mutex::new(Vec::new()),
        });
        let spu = Spu::with_store(config, spy.clone()).start().await.unwrap();
        TestSpu { spu, spy, dir }
    }

    pub fn addr(&self) -> String {
        self.spu.addr().to_string()
    }

    /// Sets roles the way the SC will: an epoch and a full sync.
    pub fn lead(&self, epoch: i64, roles: &[(&str, u32, Option<PartitionMirrorConfig>)]) {
        let all = roles
            .iter()
            .map(|(topic, partition, mirror)| ReplicaRole {
                topic: topic.to_string(),
                partition: *partition,
                leader: SPU_ID,
                mirror: mirror.clone(),
            })
            .collect();
        self.spu.roles().apply(RoleUpdate::Sync { epoch, all });
        self.spu.roles_changed();
    }

    /// Every record byte of a partition, as stored.
    pub fn stored(&self, topic: &str, partition: u32) -> Vec<u8> {
        PartitionStore::read(&self.spy.inner, topic, partition, 0, u64::MAX)
            .map(|read| read.records)
            .unwrap_or_default()
    }

    /// `/metrics`, as Prometheus scrapes it (the whole HTTP answer).
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut http = tokio::net::TcpStream::connect(self.spu.metrics_addr().unwrap())
            .await
            .unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            http.read_to_string(&mut text),
        )
        .await
        .unwrap()
        .unwrap();
        text
    }

    /// A partition's log end.
    pub fn leo(&self, topic: &str, partition: u32) -> i64 {
        PartitionStore::read(&self.spy.inner, topic, partition, i64::MAX, 0)
            .map(|read| read.high_watermark)
            .unwrap_or(0)
    }
}
