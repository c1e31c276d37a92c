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

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::model::{MirrorObject, PartitionObject, SpuObject, TopicObject};
use crate::store::{
    CURRENT_FILE, LoadError, MetadataStore, Object, Stored, current_generation, sync_dir,
    sync_filesystem, write_atomically,
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

fn read_record(data_dir: &Path) -> io::Result<Option<UpgradeRecord>> {
    match fs::read_to_string(data_dir.join(UPGRADE_FILE)) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{UPGRADE_FILE}: {e}"))
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn write_record(data_dir: &Path, record: &UpgradeRecord) -> io::Result<()> {
    write_atomically(
        data_dir,
        UPGRADE_FILE,
        &serde_json::to_vec_pretty(record).map_err(io::Error::other)?,
    )
}

/// An interrupted upgrade's description, if there is one.
pub fn interrupted(data_dir: &Path) -> io::Result<Option<String>> {
    let current = current_generation(data_dir)?;
    Ok(read_record(data_dir)?.and_then(|record| {
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

fn classify<T: Object>(store: &MetadataStore, lines: &mut Vec<Line>) -> Result<(), LoadError> {
    for scanned in store.scan::<T>()? {
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
pub fn check(data_dir: &Path) -> Result<Report, UpgradeError> {
    let generation = current_generation(data_dir)?;
    let store = MetadataStore::at(data_dir.join(&generation));
    let mut lines = Vec::new();
    classify::<SpuObject>(&store, &mut lines)?;
    classify::<TopicObject>(&store, &mut lines)?;
    classify::<PartitionObject>(&store, &mut lines)?;
    classify::<MirrorObject>(&store, &mut lines)?;
    Ok(Report {
        generation,
        lines,
        interrupted: interrupted(data_dir)?,
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
    data_dir: &Path,
    steps: &mut Steps,
    mut progress: impl FnMut(usize, usize),
) -> Result<Upgraded, UpgradeError> {
    // An interrupted upgrade is redone from the start: its generation and
    // record are dropped (CURRENT never pointed at them).
    if interrupted(data_dir)?.is_some()
        && let Some(record) = read_record(data_dir)?
    {
        remove_dir_if_exists(&data_dir.join(&record.current))?;
        fs::remove_file(data_dir.join(UPGRADE_FILE))?;
        sync_dir(data_dir)?;
    }
    if let Some(record) = read_record(data_dir)?
        && record.state == UpgradeState::Pending
    {
        return Err(UpgradeError::State(format!(
            "an upgrade to {} awaits `cluster upgrade --finalize` or `cluster rollback`",
            record.current
        )));
    }
    let report = check(data_dir)?;
    if !report.upgradable() {
        return Err(UpgradeError::NotUpgradable(report.render()));
    }
    if !report.needs_migration() {
        return Ok(Upgraded::UpToDate);
    }
    let previous = report.generation.clone();
    let source = MetadataStore::at(data_dir.join(&previous));

    // Leftovers of a crash before the rename are incomplete: drop them.
    let mut highest = 0;
    for entry in fs::read_dir(data_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(tmp) = name.strip_suffix(".tmp")
            && tmp.starts_with("gen-")
        {
            remove_dir_if_exists(&data_dir.join(&name))?;
        } else if let Some(n) = generation_number(&name) {
            highest = highest.max(n);
        }
    }
    let current = format!("gen-{:06}", highest + 1);
    let staging = data_dir.join(format!("{current}.tmp"));
    steps.step();
    fs::create_dir_all(&staging)?;
    let target = MetadataStore::at(staging.clone());

    let spus = source.scan::<SpuObject>()?;
    let topics = source.scan::<TopicObject>()?;
    let partitions = source.scan::<PartitionObject>()?;
    let mirrors = source.scan::<MirrorObject>()?;
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
                target.put_staged(&object)?;
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
    // Every staged file and directory durable, then the generation appears.
    sync_filesystem(&staging)?;
    fs::rename(&staging, data_dir.join(&current))?;
    sync_dir(data_dir)?;

    steps.step();
    let record = UpgradeRecord {
        state: UpgradeState::Pending,
        previous: previous.clone(),
        current: current.clone(),
        schemas: schema_changes(&report),
        binary: env!("CARGO_PKG_VERSION").into(),
    };
    write_record(data_dir, &record)?;

    steps.step();
    write_atomically(data_dir, CURRENT_FILE, current.as_bytes())?;
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
pub fn finalize(data_dir: &Path) -> Result<UpgradeRecord, UpgradeError> {
    let Some(mut record) = read_record(data_dir)? else {
        return Err(UpgradeError::State("no upgrade to finalize".into()));
    };
    if let Some(interrupted) = interrupted(data_dir)? {
        return Err(UpgradeError::State(format!(
            "the upgrade was interrupted ({interrupted}); run `cluster upgrade` again"
        )));
    }
    if record.state != UpgradeState::Finalized {
        record.state = UpgradeState::Finalized;
        write_record(data_dir, &record)?;
    }
    remove_dir_if_exists(&data_dir.join(&record.previous))?;
    sync_dir(data_dir)?;
    Ok(record)
}

/// Restores the generation a pending upgrade started from.
pub fn rollback(data_dir: &Path) -> Result<UpgradeRecord, UpgradeError> {
    let Some(record) = read_record(data_dir)? else {
        return Err(UpgradeError::State("no upgrade to roll back".into()));
    };
    if record.state == UpgradeState::Finalized {
        return Err(UpgradeError::State(format!(
            "the upgrade to {} was finalized; its previous generation is gone",
            record.current
        )));
    }
    write_atomically(data_dir, CURRENT_FILE, record.previous.as_bytes())?;
    remove_dir_if_exists(&data_dir.join(&record.current))?;
    fs::remove_file(data_dir.join(UPGRADE_FILE))?;
    sync_dir(data_dir)?;
    Ok(record)
}

/// What must hold before the SC may start: no interrupted upgrade, and every
/// object readable, current, and not from a newer schema. With
/// `set_aside_unreadable`, unreadable files are moved to `quarantine/` (and
/// logged) instead of failing; nothing else can be skipped.
pub fn resume_check(
    data_dir: &Path,
    set_aside_unreadable: bool,
) -> Result<Vec<PathBuf>, UpgradeError> {
    if let Some(interrupted) = interrupted(data_dir)? {
        return Err(UpgradeError::Load(LoadError::IncompleteUpgrade(
            interrupted,
        )));
    }
    let report = check(data_dir)?;
    let mut set_aside = Vec::new();
    let mut problems = String::new();
    for line in &report.lines {
        match &line.status {
            Status::Ok => {}
            Status::NeedsMigration { from, to } => {
                let _ = writeln!(
                    problems,
                    "  {}: schema {from}, this binary runs {to}: run `cluster upgrade` first",
                    line.path.display()
                );
            }
            Status::TooNew { found } => {
                let _ = writeln!(
                    problems,
                    "  {}: written by a newer schema ({found}) than this binary reads; use the newer binary",
                    line.path.display()
                );
            }
            Status::Unreadable(reason) if set_aside_unreadable => {
                let quarantine = data_dir
                    .join("quarantine")
                    .join(&report.generation)
                    .join(line.kind);
                fs::create_dir_all(&quarantine)?;
                let name = line.path.file_name().unwrap_or_default();
                fs::rename(&line.path, quarantine.join(name))?;
                warn!(file = %line.path.display(), %reason, "unreadable object set aside by request");
                set_aside.push(line.path.clone());
            }
            Status::Unreadable(reason) => {
                let _ = writeln!(problems, "  {}: unreadable: {reason}", line.path.display());
            }
        }
    }
    if !problems.is_empty() {
        return Err(UpgradeError::Refused(problems));
    }
    Ok(set_aside)
}
