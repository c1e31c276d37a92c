//! Where the SC's metadata lives, and how one change is written there.
//!
//! A change's writes are collected in a [`Changeset`] and committed
//! together: on files, in the order given, each file replaced atomically
//! (the order is chosen so that a crash between two leaves a state the
//! next start repairs); on etcd, as one transaction, all or nothing. The
//! cluster's logic never knows which ([`Persistence`]).

use std::io;
use std::path::Path;

use crate::etcd::{EtcdConfig, EtcdStore};
pub use crate::store::Write;
use crate::store::{LoadError, MetadataStore, Object, encode, strictly};

/// Where the metadata is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// Files under the SC's data directory (the default).
    #[default]
    Files,
    /// etcd v3.
    Etcd(EtcdConfig),
}

/// The writes of one change, in order.
#[derive(Debug, Default)]
pub struct Changeset {
    writes: Vec<Write>,
}

impl Changeset {
    /// Stores `object`.
    pub fn put<T: Object>(&mut self, object: &T) -> io::Result<()> {
        self.writes.push(Write::Put {
            kind: T::KIND,
            name: object.name(),
            bytes: encode(object)?,
        });
        Ok(())
    }

    /// Removes the object of kind `T` named `name`.
    pub fn delete<T: Object>(&mut self, name: &str) -> io::Result<()> {
        self.writes.push(Write::Delete {
            kind: T::KIND,
            name: name.to_string(),
        });
        Ok(())
    }
}

/// The metadata's home: files or etcd.
#[derive(Debug)]
pub enum Persistence {
    /// Files of one generation.
    Files(MetadataStore),
    /// Keys on etcd.
    Etcd(Box<EtcdStore>),
}

impl Persistence {
    /// Opens the store `config` names; files live under `data_dir`.
    pub fn open(config: &StoreConfig, data_dir: &Path) -> io::Result<Self> {
        Ok(match config {
            StoreConfig::Files => Self::Files(MetadataStore::open(data_dir)?),
            StoreConfig::Etcd(etcd) => Self::Etcd(Box::new(EtcdStore::open(etcd.clone())?)),
        })
    }

    /// Every object of a kind, strictly (see [`MetadataStore::load_all`]).
    pub fn load_all<T: Object>(&self) -> Result<Vec<T>, LoadError> {
        match self {
            Self::Files(files) => files.load_all(),
            Self::Etcd(etcd) => {
                let scanned = etcd.scan::<T>().map_err(|source| LoadError::List {
                    path: etcd.describe().into(),
                    source,
                })?;
                strictly(scanned)
            }
        }
    }

    /// Commits one change.
    pub fn commit(&self, changes: Changeset) -> io::Result<()> {
        match self {
            Self::Files(files) => {
                for write in changes.writes {
                    match write {
                        Write::Put { kind, name, bytes } => {
                            files.put_encoded(kind, &name, &bytes)?
                        }
                        Write::Delete { kind, name } => files.delete_encoded(kind, &name)?,
                    }
                }
                Ok(())
            }
            Self::Etcd(etcd) => etcd.commit(changes.writes),
        }
    }

    /// Gives up the leadership, if this store holds one (etcd): a standby
    /// takes over at once. Called on a graceful stop.
    pub fn resign(&self) -> io::Result<()> {
        match self {
            Self::Files(_) => Ok(()),
            Self::Etcd(etcd) => etcd.resign(),
        }
    }

    /// Where the metadata is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Files(files) => files.root().display().to_string(),
            Self::Etcd(etcd) => etcd.describe(),
        }
    }
}
