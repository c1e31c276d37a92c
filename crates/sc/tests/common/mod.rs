//! What the SC's tests share: the metadata store they run on. Files by
//! default; with `MG_TEST_STORE=etcd` (`make test` runs the SC's tests that
//! way too), a real etcd each test starts on loopback and stops. The
//! cluster's logic never knows which.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use mg_sc::Cluster;
use mg_sc::etcd::EtcdConfig;
use mg_sc::persist::StoreConfig;
use mg_testkit::etcd::Etcd;

/// A store for one test: its configuration, and the etcd it runs on.
pub struct TestStore {
    /// What a cluster opens.
    pub config: StoreConfig,
    /// The etcd, stopped with the store.
    pub etcd: Option<Etcd>,
}

impl TestStore {
    /// The store `MG_TEST_STORE` names (`etcd`, or files).
    pub fn from_env() -> Self {
        match std::env::var("MG_TEST_STORE").as_deref() {
            Ok("etcd") => Self::etcd(),
            _ => Self {
                config: StoreConfig::Files,
                etcd: None,
            },
        }
    }

    /// A fresh single-member etcd.
    pub fn etcd() -> Self {
        let etcd = Etcd::start();
        let config = StoreConfig::Etcd(EtcdConfig {
            endpoints: etcd.endpoints(),
            prefix: "/mirror-guard/test".into(),
        });
        Self {
            config,
            etcd: Some(etcd),
        }
    }

    /// A cluster on this store; local state under `dir`. On etcd each
    /// directory gets a prefix of its own, the same every time: two
    /// clusters of one test do not meet, and one opened again finds its
    /// metadata.
    pub fn open(&self, dir: &Path) -> Arc<Cluster> {
        Arc::new(Cluster::open_with(dir, &self.config_for(dir)).expect("the cluster opens"))
    }

    /// The configuration of the cluster under `dir`.
    pub fn config_for(&self, dir: &Path) -> StoreConfig {
        match &self.config {
            StoreConfig::Etcd(etcd) => {
                let name: String = dir
                    .to_string_lossy()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                StoreConfig::Etcd(EtcdConfig {
                    prefix: format!("{}/{name}", etcd.prefix),
                    ..etcd.clone()
                })
            }
            files => files.clone(),
        }
    }
}
