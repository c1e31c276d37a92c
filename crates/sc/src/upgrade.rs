//! Upgrading the SC's metadata: check everything before changing anything,
//! migrate atomically into a new generation, keep the old one until the
//! upgrade is finalized, and roll back on request.
//!
//! ```text
//! check     read and classify every object; write nothing
//! upgrade   check; write every object, migrated, into gen-N.tmp; sync;
//!           rename it gen-N; record UPGRADE {pending, previous, current};
//!           switch CURRENT to gen-N            <- the commit point
//! finalize  UPGRADE -> finalized; only then prune the previous generation
//! rollback  (before finalize) CURRENT back to the previous generation;
//!           drop gen-N and UPGRADE
//! ```
//!
//! A crash anywhere leaves `CURRENT` naming a complete generation, old or
//! new. An `UPGRADE` record whose generation is not current marks an
//! interrupted upgrade: resuming refuses until `upgrade` is run again (it
//! redoes the work) or `rollback` clears it.
//!
//! The same algorithm runs on both backends ([`Generations`]). On etcd a
//! new generation's keys are written in batches under its own prefix,
//! where nothing reads them, and the commit point is one transaction that
//! records the upgrade and switches `CURRENT`, guarded by a compare on
//! `CURRENT`'s old value and on no SC holding the leadership; rollback and
//! finalize are one transaction each. So on etcd an upgrade is never seen
//! half-switched: what a crash leaves is at most a generation nobody
//! names, which the next upgrade drops.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use etcd_client::{Compare, CompareOp, DeleteOptions, TxnOp};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::etcd::{BULK_TXN_OPS, EtcdStore};
use crate::model::{MirrorObject, PartitionObject, SpuObject, TopicObject};
use crate::persist::StoreConfig;
use crate::store::{
    CURRENT_FILE, LoadError, MetadataStore, Object, Scanned, Stored, current_generation, encode,
    sync_dir, sync_filesystem, write_atomically,
};

/// The file recording an upgrade.
pub const UPGRADE_FILE: &str = "UPGRADE";

/// Why an upgrade command failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The check found objects that cannot be upgraded.
    #[error("the metadata cannot be upgraded:\n{0}")]
    NotUpgradable(String),
    /// The SC may not start on this metadata.
    #[error("the metadata cannot be used by this binary:\n{0}")]
    Refused(String),
    /// The command does not apply in the store's state.
    #[error("{0}")]
    State(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Listing a directory failed.
    #[error("{0}")]
    Load(#[from] LoadError),
}

/// Where an upgrade stands; written as `"pending"` or `"finalized"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpgradeState {
    /// The new generation is written (and maybe current); the previous one
    /// is kept for a rollback.
    Pending,
    /// The upgrade is committed; the previous generation is pruned.
    Finalized,
}

/// The record of an upgrade, in `UPGRADE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// Pending until finalized.
    pub state: UpgradeState,
    /// The generation upgraded from.
    pub previous: String,
    /// The generation upgraded to.
    pub current: String,
    /// Per kind: (schema found, schema written).
    pub schemas: Vec<(String, u32, u32)>,
    /// The binary that ran the upgrade.
    pub binary: String,
}

impl UpgradeRecord {
    /// As stored, in the file or under the key `UPGRADE`.
    fn to_bytes(&self) -> io::Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(io::Error::other)
    }
}

/// The metadata's generations, wherever they are kept: the files under an
/// SC's data directory, or the keys under a cluster's prefix on etcd.
#[derive(Debug)]
pub enum Generations {
    /// Files under this data directory.
    Files(PathBuf),
    /// Keys on etcd.
    Etcd(Box<EtcdStore>),
}

impl Generations {
    /// The files under `data_dir`.
    pub fn files(data_dir: &Path) -> Self {
        Self::Files(data_dir.to_path_buf())
    }

    /// The metadata `config` names; files live under `data_dir`.
    pub fn open(data_dir: &Path, config: &StoreConfig) -> io::Result<Self> {
        Ok(match config {
            StoreConfig::Files => Self::files(data_dir),
            StoreConfig::Etcd(etcd) => Self::Etcd(Box::new(EtcdStore::open(etcd.clone())?)),
        })
    }

    /// The active generation.
    pub fn current(&self) -> io::Result<String> {
        match self {
            Self::Files(dir) => current_generation(dir),
            Self::Etcd(etcd) => Ok(etcd.current_guard()?.0),
        }
    }

    /// The upgrade record, if there is one.
    pub fn record(&self) -> io::Result<Option<UpgradeRecord>> {
        let (text, name) = match self {
            Self::Files(dir) => match fs::read(dir.join(UPGRADE_FILE)) {
                Ok(text) => (text, UPGRADE_FILE.to_string()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            },
            Self::Etcd(etcd) => match etcd.get(&etcd.upgrade_key())? {
                Some(text) => (text, etcd.upgrade_key()),
                None => return Ok(None),
            },
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))
    }

    /// Every object of a kind in `generation`, and what each holds.
    pub fn scan<T: Object>(&self, generation: &str) -> Result<Vec<Scanned<T>>, LoadError> {
        match self {
            Self::Files(dir) => MetadataStore::at(dir.join(generation)).scan::<T>(),
            Self::Etcd(etcd) => etcd
                .scan_in::<T>(generation)
                .map_err(|source| LoadError::List {
                    path: etcd.generation_prefix(generation).into(),
                    source,
                }),
        }
    }

    /// Refuses to change metadata an SC may be running on. Files: the
    /// caller checked the local processes. etcd: no SC may hold the
    /// leadership (and the switch itself is guarded on that again).
    pub fn ensure_idle(&self) -> Result<(), UpgradeError> {
        match self {
            Self::Files(_) => Ok(()),
            Self::Etcd(etcd) => match etcd.leader()? {
                Some(leader) => Err(UpgradeError::State(format!(
                    "an SC is running on etcd prefix {} (the leader is {leader:?}): stop every SC first",
                    etcd.prefix()
                ))),
                None => Ok(()),
            },
        }
    }

    /// Drops a generation, whole.
    fn drop_generation(&self, generation: &str) -> io::Result<()> {
        match self {
            Self::Files(dir) => remove_dir_if_exists(&dir.join(generation)),
            Self::Etcd(etcd) => {
                let op = delete_prefix(&etcd.generation_prefix(generation));
                guarded(etcd, None, vec![op], "drop a generation")
            }
        }
    }

    /// Drops an interrupted upgrade: its generation and its record.
    fn drop_interrupted(&self, record: &UpgradeRecord) -> io::Result<()> {
        match self {
            Self::Files(dir) => {
                remove_dir_if_exists(&dir.join(&record.current))?;
                fs::remove_file(dir.join(UPGRADE_FILE))?;
                sync_dir(dir)
            }
            Self::Etcd(etcd) => {
                let ops = vec![
                    delete_prefix(&etcd.generation_prefix(&record.current)),
                    TxnOp::delete(etcd.upgrade_key(), None),
                ];
                guarded(etcd, None, ops, "drop the interrupted upgrade")
            }
        }
    }

    /// Drops what upgrades cut short left behind (never the current
    /// generation); returns the highest generation number in use.
    fn drop_leftovers(&self, current: &str) -> io::Result<u32> {
        let mut highest = 0;
        match self {
            Self::Files(dir) => {
                // Leftovers of a crash before the rename are incomplete.
                for entry in fs::read_dir(dir)? {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if let Some(tmp) = name.strip_suffix(".tmp")
                        && tmp.starts_with("gen-")
                    {
                        remove_dir_if_exists(&dir.join(&name))?;
                    } else if let Some(n) = generation_number(&name) {
                        highest = highest.max(n);
                    }
                }
            }
            Self::Etcd(etcd) => {
                // With no upgrade pending, only the current generation is
                // named by anything: any other is a cut-short upgrade's.
                for name in etcd.generations()? {
                    if name != current {
                        warn!(generation = %name, "dropping what an interrupted upgrade wrote");
                        self.drop_generation(&name)?;
                    }
                    if let Some(n) = generation_number(&name) {
                        highest = highest.max(n);
                    }
                }
            }
        }
        Ok(highest.max(generation_number(current).unwrap_or(0)))
    }

    /// Starts writing `generation`, which nothing reads until [`switch`](Self::switch).
    fn stage(&self, generation: &str) -> io::Result<Stage<'_>> {
        Ok(match self {
            Self::Files(dir) => {
                let staging = dir.join(format!("{generation}.tmp"));
                fs::create_dir_all(&staging)?;
                Stage::Files {
                    target: MetadataStore::at(staging.clone()),
                    staging,
                    published: dir.join(generation),
                    data_dir: dir,
                }
            }
            Self::Etcd(etcd) => Stage::Etcd {
                etcd,
                generation: generation.to_string(),
                batch: Vec::new(),
            },
        })
    }

    /// Records `record` (pending) and makes its generation current. Files:
    /// two steps, the record first; etcd: one transaction.
    fn switch(&self, record: &UpgradeRecord, steps: &mut Steps) -> io::Result<()> {
        match self {
            Self::Files(dir) => {
                write_atomically(dir, UPGRADE_FILE, &record.to_bytes()?)?;
                steps.step();
                write_atomically(dir, CURRENT_FILE, record.current.as_bytes())
            }
            Self::Etcd(etcd) => {
                let ops = vec![
                    TxnOp::put(etcd.upgrade_key(), record.to_bytes()?, None),
                    TxnOp::put(etcd.current_key(), record.current.as_bytes(), None),
                ];
                guarded(etcd, Some(&record.previous), ops, "switch generations")
            }
        }
    }

    /// Marks `record` finalized and prunes its previous generation.
    fn finalize(&self, record: &UpgradeRecord) -> io::Result<()> {
        let mut record = record.clone();
        record.state = UpgradeState::Finalized;
        match self {
            Self::Files(dir) => {
                write_atomically(dir, UPGRADE_FILE, &record.to_bytes()?)?;
                remove_dir_if_exists(&dir.join(&record.previous))?;
                sync_dir(dir)
            }
            Self::Etcd(etcd) => {
                let ops = vec![
                    TxnOp::put(etcd.upgrade_key(), record.to_bytes()?, None),
                    delete_prefix(&etcd.generation_prefix(&record.previous)),
                ];
                guarded(etcd, Some(&record.current), ops, "finalize")
            }
        }
    }

    /// Restores `record`'s previous generation and drops its new one.
    fn rollback(&self, record: &UpgradeRecord) -> io::Result<()> {
        match self {
            Self::Files(dir) => {
                write_atomically(dir, CURRENT_FILE, record.previous.as_bytes())?;
                remove_dir_if_exists(&dir.join(&record.current))?;
                fs::remove_file(dir.join(UPGRADE_FILE))?;
                sync_dir(dir)
            }
            Self::Etcd(etcd) => {
                let ops = vec![
                    TxnOp::put(etcd.current_key(), record.previous.as_bytes(), None),
                    delete_prefix(&etcd.generation_prefix(&record.current)),
                    TxnOp::delete(etcd.upgrade_key(), None),
                ];
                guarded(etcd, Some(&record.current), ops, "roll back")
            }
        }
    }

    /// Moves one unreadable object (`at`, its file or key) of `kind` in
    /// `generation` into the quarantine; returns where it went.
    fn set_aside(&self, generation: &str, kind: &str, at: &Path) -> io::Result<PathBuf> {
        let name = at.file_name().unwrap_or_default();
        match self {
            Self::Files(dir) => {
                let quarantine = dir.join("quarantine").join(generation).join(kind);
                fs::create_dir_all(&quarantine)?;
                fs::rename(at, quarantine.join(name))?;
                Ok(quarantine.join(name))
            }
            Self::Etcd(etcd) => {
                let key = at.to_string_lossy().into_owned();
                let value = etcd.get(&key)?.unwrap_or_default();
                let aside = format!(
                    "{}/quarantine/{generation}/{kind}/{}",
                    etcd.prefix(),
                    name.to_string_lossy()
                );
                let ops = vec![
                    TxnOp::put(aside.clone(), value, None),
                    TxnOp::delete(key, None),
                ];
                guarded(etcd, Some(generation), ops, "set an object aside")?;
                Ok(PathBuf::from(aside))
            }
        }
    }
}

/// Runs `ops` on etcd if no SC leads and `CURRENT` still names
/// `current` (when given); an unmet condition is an error naming `what`.
fn guarded(etcd: &EtcdStore, current: Option<&str>, ops: Vec<TxnOp>, what: &str) -> io::Result<()> {
    let mut compares = vec![Compare::create_revision(
        etcd.leader_key(),
        CompareOp::Equal,
        0,
    )];
    if let Some(expected) = current {
        let (found, guard) = etcd.current_guard()?;
        if found != expected {
            return Err(io::Error::other(format!(
                "could not {what}: {} names {found}, not {expected}; nothing was written",
                etcd.current_key()
            )));
        }
        compares.push(guard);
    }
    if etcd.transact(compares, ops)? {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "could not {what}: an SC was elected, or {} changed, meanwhile; nothing was written",
            etcd.current_key()
        )))
    }
}

fn delete_prefix(prefix: &str) -> TxnOp {
    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
}

/// A generation being written.
enum Stage<'a> {
    Files {
        data_dir: &'a Path,
        staging: PathBuf,
        published: PathBuf,
        target: MetadataStore,
    },
    Etcd {
        etcd: &'a EtcdStore,
        generation: String,
        batch: Vec<TxnOp>,
    },
}

impl Stage<'_> {
    fn put<T: Object>(&mut self, object: &T) -> io::Result<()> {
        match self {
            Self::Files { target, .. } => target.put_staged(object),
            Self::Etcd {
                etcd,
                generation,
                batch,
            } => {
                let key = etcd.key_in(generation, T::KIND, &object.name());
                batch.push(TxnOp::put(key, encode(object)?, None));
                if batch.len() >= BULK_TXN_OPS {
                    let ops = std::mem::take(batch);
                    guarded(etcd, None, ops, "write the new generation")?;
                }
                Ok(())
            }
        }
    }

    /// Makes everything written durable, and (files) the generation appear.
    fn seal(self) -> io::Result<()> {
        match self {
            Self::Files {
                data_dir,
                staging,
                published,
                ..
            } => {
                // Every staged file and directory durable, then the generation appears.
                sync_filesystem(&staging)?;
                fs::rename(&staging, published)?;
                sync_dir(data_dir)
            }
            Self::Etcd { etcd, batch, .. } => {
                if batch.is_empty() {
                    return Ok(());
                }
                guarded(etcd, None, batch, "write the new generation")
            }
        }
    }
}

/// An interrupted upgrade's description, if there is one.
pub fn interrupted(store: &Generations) -> io::Result<Option<String>> {
    let current = store.current()?;
    Ok(store.record()?.and_then(|record| {
        (record.state == UpgradeState::Pending && record.current != current).then(|| {
            format!(
                "{} was prepared but {} is still current",
                record.current, current
            )
        })
    }))
}

/// One object's status in a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Current schema.
    Ok,
    /// An older schema that will be migrated.
    NeedsMigration {
        /// Schema found.
        from: u32,
        /// Schema it becomes.
        to: u32,
    },
    /// A newer schema than this binary reads.
    TooNew {
        /// Schema found.
        found: u32,
    },
    /// Not readable.
    Unreadable(String),
}

/// One object's line in a check.
#[derive(Clone, Debug)]
pub struct Line {
    /// The kind.
    pub kind: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Its status.
    pub status: Status,
}

impl Line {
    /// Why this object keeps this binary from running on the metadata as
    /// it is, if it does: named by its file or key, with what to do.
    pub fn problem(&self) -> Option<String> {
        let at = self.path.display();
        match &self.status {
            Status::Ok => None,
            Status::NeedsMigration { from, to } => Some(format!(
                "{at}: schema {from}, this binary runs {to}: run `cluster upgrade` first"
            )),
            Status::TooNew { found } => Some(format!(
                "{at}: written by a newer schema ({found}) than this binary reads; use the newer binary"
            )),
            Status::Unreadable(reason) => Some(format!("{at}: unreadable: {reason}")),
        }
    }
}

/// The result of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The generation checked.
    pub generation: String,
    /// Every object.
    pub lines: Vec<Line>,
    /// An interrupted upgrade, if any (re-running `upgrade` redoes it).
    pub interrupted: Option<String>,
}

impl Report {
    /// Whether every object can be read by this binary (and so upgraded).
    pub fn upgradable(&self) -> bool {
        self.lines
            .iter()
            .all(|l| matches!(l.status, Status::Ok | Status::NeedsMigration { .. }))
    }

    /// Whether anything needs migrating.
    pub fn needs_migration(&self) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l.status, Status::NeedsMigration { .. }))
    }

    /// The report, by kind and by object.
    pub fn render(&self) -> String {
        let mut out = format!("metadata generation {}\n", self.generation);
        if let Some(interrupted) = &self.interrupted {
            let _ = writeln!(out, "  interrupted upgrade: {interrupted}");
        }
        for kind in ["spu", "topic", "partition", "mirror"] {
            let lines: Vec<&Line> = self.lines.iter().filter(|l| l.kind == kind).collect();
            let count = |f: fn(&Status) -> bool| lines.iter().filter(|l| f(&l.status)).count();
            let _ = writeln!(
                out,
                "  {kind}: {} ok, {} need migration, {} unreadable, {} too new",
                count(|s| matches!(s, Status::Ok)),
                count(|s| matches!(s, Status::NeedsMigration { .. })),
                count(|s| matches!(s, Status::Unreadable(_))),
                count(|s| matches!(s, Status::TooNew { .. })),
            );
            for line in lines {
                let name = line
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let status = match &line.status {
                    Status::Ok => "ok".to_string(),
                    Status::NeedsMigration { from, to } => {
                        format!("needs migration (schema {from} -> {to})")
                    }
                    Status::TooNew { found } => format!(
                        "written by a newer schema ({found}): {}",
                        line.path.display()
                    ),
                    Status::Unreadable(reason) => {
                        format!("unreadable: {reason} ({})", line.path.display())
                    }
                };
                let _ = writeln!(out, "    {name}: {status}");
            }
        }
        out
    }
}

fn classify<T: Object>(
    store: &Generations,
    generation: &str,
    lines: &mut Vec<Line>,
) -> Result<(), LoadError> {
    for scanned in store.scan::<T>(generation)? {
        let status = match scanned.stored {
            Stored::Current(_) => Status::Ok,
            Stored::Migratable { from, .. } => Status::NeedsMigration {
                from,
                to: T::SCHEMA,
            },
            Stored::TooNew { found } => Status::TooNew { found },
            Stored::Unreadable(reason) => Status::Unreadable(reason),
        };
        lines.push(Line {
            kind: T::KIND,
            path: scanned.path,
            status,
        });
    }
    Ok(())
}

/// Reads and classifies every object of the active generation; writes nothing.
pub fn check(store: &Generations) -> Result<Report, UpgradeError> {
    let generation = store.current()?;
    let mut lines = Vec::new();
    classify::<SpuObject>(store, &generation, &mut lines)?;
    classify::<TopicObject>(store, &generation, &mut lines)?;
    classify::<PartitionObject>(store, &generation, &mut lines)?;
    classify::<MirrorObject>(store, &generation, &mut lines)?;
    Ok(Report {
        generation,
        lines,
        interrupted: interrupted(store)?,
    })
}

/// Counts write steps. With the `fault-injection` feature (tests only),
/// it can abort the process at a chosen step.
#[derive(Debug, Default)]
pub struct Steps {
    taken: u32,
    #[cfg(feature = "fault-injection")]
    crash_at: Option<u32>,
}

impl Steps {
    /// A counter of write steps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Steps that abort the process at step `crash_at` (1-based), if given:
    /// the crash-injection switch of the tests.
    #[cfg(feature = "fault-injection")]
    pub fn crashing_at(crash_at: Option<u32>) -> Self {
        Self { taken: 0, crash_at }
    }

    fn step(&mut self) {
        self.taken += 1;
        #[cfg(feature = "fault-injection")]
        if self.crash_at == Some(self.taken) {
            eprintln!("crash injected at upgrade step {}", self.taken);
            std::process::abort();
        }
    }

    /// Steps taken so far.
    pub fn taken(&self) -> u32 {
        self.taken
    }
}

/// What an upgrade did.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgraded {
    /// Nothing needed migrating.
    UpToDate,
    /// Migrated from `previous` into `current`.
    Migrated {
        /// The old generation, kept as a backup.
        previous: String,
        /// The new, active generation.
        current: String,
        /// Objects written.
        objects: usize,
    },
}

fn generation_number(name: &str) -> Option<u32> {
    name.strip_prefix("gen-")?.parse().ok()
}

/// Checks, then migrates every object into a new generation, atomically.
/// `progress` is called with (objects written, objects in all).
pub fn upgrade(
    store: &Generations,
    steps: &mut Steps,
    mut progress: impl FnMut(usize, usize),
) -> Result<Upgraded, UpgradeError> {
    store.ensure_idle()?;
    // An interrupted upgrade is redone from the start: its generation and
    // record are dropped (CURRENT never pointed at them).
    if interrupted(store)?.is_some()
        && let Some(record) = store.record()?
    {
        store.drop_interrupted(&record)?;
    }
    if let Some(record) = store.record()?
        && record.state == UpgradeState::Pending
    {
        return Err(UpgradeError::State(format!(
            "an upgrade to {} awaits `cluster upgrade --finalize` or `cluster rollback`",
            record.current
        )));
    }
    let report = check(store)?;
    if !report.upgradable() {
        return Err(UpgradeError::NotUpgradable(report.render()));
    }
    if !report.needs_migration() {
        return Ok(Upgraded::UpToDate);
    }
    let previous = report.generation.clone();
    let highest = store.drop_leftovers(&previous)?;
    let current = format!("gen-{:06}", highest + 1);
    steps.step();
    let mut target = store.stage(&current)?;

    let spus = store.scan::<SpuObject>(&previous)?;
    let topics = store.scan::<TopicObject>(&previous)?;
    let partitions = store.scan::<PartitionObject>(&previous)?;
    let mirrors = store.scan::<MirrorObject>(&previous)?;
    let total = spus.len() + topics.len() + partitions.len() + mirrors.len();
    let mut written = 0;
    macro_rules! migrate {
        ($scanned:expr) => {
            for scanned in $scanned {
                let object = match scanned.stored {
                    Stored::Current(object) | Stored::Migratable { object, .. } => object,
                    // The check above ruled these out.
                    _ => {
                        return Err(UpgradeError::State(format!(
                            "{} changed during the upgrade",
                            scanned.path.display()
                        )));
                    }
                };
                steps.step();
                target.put(&object)?;
                written += 1;
                progress(written, total);
            }
        };
    }
    migrate!(spus);
    migrate!(topics);
    migrate!(partitions);
    migrate!(mirrors);

    steps.step();
    target.seal()?;

    steps.step();
    let record = UpgradeRecord {
        state: UpgradeState::Pending,
        previous: previous.clone(),
        current: current.clone(),
        schemas: schema_changes(&report),
        binary: env!("CARGO_PKG_VERSION").into(),
    };
    store.switch(&record, steps)?;
    Ok(Upgraded::Migrated {
        previous,
        current,
        objects: written,
    })
}

fn schema_changes(report: &Report) -> Vec<(String, u32, u32)> {
    let mut changes: Vec<(String, u32, u32)> = Vec::new();
    for line in &report.lines {
        if let Status::NeedsMigration { from, to } = line.status {
            let entry = (line.kind.to_string(), from, to);
            if !changes.contains(&entry) {
                changes.push(entry);
            }
        }
    }
    changes
}

fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Commits a pending upgrade; only then is the previous generation pruned.
pub fn finalize(store: &Generations) -> Result<UpgradeRecord, UpgradeError> {
    store.ensure_idle()?;
    let Some(record) = store.record()? else {
        return Err(UpgradeError::State("no upgrade to finalize".into()));
    };
    if let Some(interrupted) = interrupted(store)? {
        return Err(UpgradeError::State(format!(
            "the upgrade was interrupted ({interrupted}); run `cluster upgrade` again"
        )));
    }
    store.finalize(&record)?;
    Ok(UpgradeRecord {
        state: UpgradeState::Finalized,
        ..record
    })
}

/// Restores the generation a pending upgrade started from.
pub fn rollback(store: &Generations) -> Result<UpgradeRecord, UpgradeError> {
    store.ensure_idle()?;
    let Some(record) = store.record()? else {
        return Err(UpgradeError::State("no upgrade to roll back".into()));
    };
    if record.state == UpgradeState::Finalized {
        return Err(UpgradeError::State(format!(
            "the upgrade to {} was finalized; its previous generation is gone",
            record.current
        )));
    }
    store.rollback(&record)?;
    Ok(record)
}

/// What must hold before the SC may start: no interrupted upgrade, and every
/// object readable, current, and not from a newer schema. With
/// `set_aside_unreadable`, unreadable files are moved to `quarantine/` (and
/// logged) instead of failing; nothing else can be skipped.
pub fn resume_check(
    store: &Generations,
    set_aside_unreadable: bool,
) -> Result<Vec<PathBuf>, UpgradeError> {
    if let Some(interrupted) = interrupted(store)? {
        return Err(UpgradeError::Load(LoadError::IncompleteUpgrade(
            interrupted,
        )));
    }
    let report = check(store)?;
    let mut set_aside = Vec::new();
    let mut problems = String::new();
    for line in &report.lines {
        match &line.status {
            Status::Unreadable(reason) if set_aside_unreadable => {
                let aside = store.set_aside(&report.generation, line.kind, &line.path)?;
                warn!(object = %line.path.display(), to = %aside.display(), %reason, "unreadable object set aside by request");
                set_aside.push(line.path.clone());
            }
            _ => {
                if let Some(problem) = line.problem() {
                    let _ = writeln!(problems, "  {problem}");
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(UpgradeError::Refused(problems));
    }
    Ok(set_aside)
}
