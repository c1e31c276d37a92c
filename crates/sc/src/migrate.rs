//! Moving a cluster's metadata from its files to etcd.
//!
//! ```text
//! check    the files: no upgrade pending or interrupted, every object
//!          readable and of this binary's schema; etcd: reachable, no SC
//!          leads the prefix, and the prefix holds nothing (but what a
//!          migration cut short left)            <- `--check` stops here
//! write    every object under <prefix>/<generation>/, in batches nobody
//!          reads: no CURRENT names that generation yet
//! commit   one transaction: CURRENT := <generation>, if CURRENT was never
//!          created and no SC leads              <- the commit point
//! ```
//!
//! The generation keeps the files' name (`gen-000003` stays `gen-000003`,
//! so later upgrades count on), except the first, `metadata`, which an
//! absent CURRENT already names on etcd: it becomes `gen-000001`, so that
//! an SC started on the prefix mid-way sees an empty store, never half of
//! one (and, elected, makes the commit fail). A migration cut short leaves
//! only keys of its own generation, which the next run drops and writes
//! again. The files are left as they were.

use std::path::Path;

use etcd_client::{Compare, CompareOp, DeleteOptions, TxnOp};

use crate::etcd::{BULK_TXN_OPS, EtcdConfig, EtcdStore, FIRST_GENERATION};
use crate::model::{MirrorObject, PartitionObject, SpuObject, TopicObject};
use crate::store::{Object, Stored, encode};
use crate::upgrade::{self, Generations, UpgradeError, UpgradeState};

/// What a migration found, or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The generation on etcd the objects go (or went) into.
    pub generation: String,
    /// Objects per kind, in the order spu, topic, partition, mirror.
    pub objects: Vec<(&'static str, usize)>,
    /// Keys a migration cut short had left, dropped before writing.
    pub leftovers: usize,
    /// Whether anything was written (not a check).
    pub written: bool,
}

impl Migration {
    /// Objects in all.
    pub fn total(&self) -> usize {
        self.objects.iter().map(|(_, n)| n).sum()
    }
}

/// Checks, then (unless `check_only`) moves the metadata of the SC data
/// directory `data_dir` to etcd.
pub fn to_etcd(
    data_dir: &Path,
    to: &EtcdConfig,
    check_only: bool,
) -> Result<Migration, UpgradeError> {
    let files = Generations::files(data_dir);
    if let Some(interrupted) = upgrade::interrupted(&files)? {
        return Err(UpgradeError::State(format!(
            "an upgrade was interrupted ({interrupted}): run `cluster upgrade` again, or `cluster rollback`, first"
        )));
    }
    if let Some(record) = files.record()?
        && record.state == UpgradeState::Pending
    {
        return Err(UpgradeError::State(format!(
            "an upgrade to {} awaits `cluster upgrade --finalize` or `cluster rollback`: finish it first",
            record.current
        )));
    }
    let report = upgrade::check(&files)?;
    let problems: Vec<String> = report
        .lines
        .iter()
        .filter_map(|line| Some(format!("  {}", line.problem()?)))
        .collect();
    if !problems.is_empty() {
        return Err(UpgradeError::Refused(problems.join("\n") + "\n"));
    }
    let generation = if report.generation == FIRST_GENERATION {
        "gen-000001".to_string()
    } else {
        report.generation.clone()
    };
    let count = |kind: &str| report.lines.iter().filter(|l| l.kind == kind).count();
    let objects = vec![
        (SpuObject::KIND, count(SpuObject::KIND)),
        (TopicObject::KIND, count(TopicObject::KIND)),
        (PartitionObject::KIND, count(PartitionObject::KIND)),
        (MirrorObject::KIND, count(MirrorObject::KIND)),
    ];

    let etcd = EtcdStore::open(to.clone())?;
    let leftovers = ensure_empty(&etcd, &generation)?;
    let mut migration = Migration {
        generation,
        objects,
        leftovers,
        written: false,
    };
    if check_only {
        return Ok(migration);
    }
    let unmet = |what: &str| {
        UpgradeError::State(format!(
            "could not {what}: an SC was elected on {} meanwhile, or another migration ran; nothing was made current",
            etcd.prefix()
        ))
    };
    let nobody = || {
        vec![
            Compare::create_revision(etcd.current_key(), CompareOp::Equal, 0),
            Compare::create_revision(etcd.leader_key(), CompareOp::Equal, 0),
        ]
    };
    if leftovers > 0 {
        let prefix = etcd.generation_prefix(&migration.generation);
        let drop = TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()));
        if !etcd.transact(nobody(), vec![drop])? {
            return Err(unmet("drop what a cut-short migration left"));
        }
    }
    let mut batch = Vec::with_capacity(BULK_TXN_OPS);
    let flush = |batch: &mut Vec<TxnOp>| -> Result<(), UpgradeError> {
        if !batch.is_empty() && !etcd.transact(nobody(), std::mem::take(batch))? {
            return Err(unmet("write the metadata"));
        }
        Ok(())
    };
    macro_rules! copy {
        ($kind:ty) => {
            for scanned in files.scan::<$kind>(&report.generation)? {
                let Stored::Current(object) = scanned.stored else {
                    return Err(UpgradeError::State(format!(
                        "{} changed during the migration",
                        scanned.path.display()
                    )));
                };
                let key = etcd.key_in(&migration.generation, <$kind>::KIND, &object.name());
                batch.push(TxnOp::put(key, encode(&object)?, None));
                if batch.len() >= BULK_TXN_OPS {
                    flush(&mut batch)?;
                }
            }
        };
    }
    copy!(SpuObject);
    copy!(TopicObject);
    copy!(PartitionObject);
    copy!(MirrorObject);
    flush(&mut batch)?;
    let commit = TxnOp::put(
        etcd.current_key(),
        migration.generation.as_bytes().to_vec(),
        None,
    );
    if !etcd.transact(nobody(), vec![commit])? {
        return Err(unmet("make the metadata current"));
    }
    migration.written = true;
    Ok(migration)
}

/// Refuses a prefix that holds anything but keys of `generation` left by a
/// migration cut short (CURRENT never written); returns how many of those.
fn ensure_empty(etcd: &EtcdStore, generation: &str) -> Result<usize, UpgradeError> {
    if let Some(leader) = etcd.leader()? {
        return Err(UpgradeError::State(format!(
            "an SC is running on etcd prefix {} (the leader is {leader:?}): stop it; the prefix must be new",
            etcd.prefix()
        )));
    }
    let keys = etcd.range(&format!("{}/", etcd.prefix()), true)?;
    let own = etcd.generation_prefix(generation);
    let foreign: Vec<&String> = keys
        .iter()
        .map(|(key, _)| key)
        .filter(|key| !key.starts_with(&own))
        .collect();
    if let Some(first) = foreign.first() {
        return Err(UpgradeError::State(format!(
            "etcd prefix {} already holds {} key(s) ({first}, …): migrate into a new prefix",
            etcd.prefix(),
            foreign.len()
        )));
    }
    Ok(keys.len())
}
