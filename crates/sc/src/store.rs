//! Persistence: one file per object, written atomically, in generations.
//!
//! Layout under the SC's data directory:
//!
//! ```text
//! CURRENT                          the active generation's directory name (absent: "metadata")
//! metadata/ | gen-000001/ | ...    generations: <kind>/<name>.json
//! UPGRADE                          an upgrade in progress or done, see `upgrade`
//! ```
//!
//! Each file is an envelope `{ "schema": N, "kind": …, "name": …, "spec": {…} }`
//! recording the schema it was written with. Spec fields this binary does
//! not know are kept and written back (each spec flattens them into `extra`);
//! an unknown envelope field makes the file unreadable rather than dropped.
//!
//! A write goes to a temporary file in the same directory, which is synced,
//! renamed over the target, and then the directory is synced: after a crash
//! the file holds the old object or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The generation used before any upgrade.
pub const FIRST_GENERATION: &str = "metadata";
/// The file naming the active generation.
pub const CURRENT_FILE: &str = "CURRENT";

/// A kind of object the SC persists.
pub trait Object: Serialize + DeserializeOwned {
    /// Directory name, and the `kind` recorded in each file.
    const KIND: &'static str;
    /// The schema version this binary writes (and the newest it reads).
    const SCHEMA: u32;
    /// The object's name, unique within its kind; also its file name.
    fn name(&self) -> String;
    /// Reads a spec written with an older `schema`, migrating it to the
    /// current layout. Kinds without older schemas keep this default.
    fn migrate(schema: u32, spec: Value) -> Result<Self, String> {
        let _ = spec;
        Err(format!(
            "no migration from schema {schema} to {}",
            Self::SCHEMA
        ))
    }
}

/// One write of a change, to either store (files or etcd; see
/// `persist::Changeset`).
#[derive(Debug)]
pub enum Write {
    /// Store an object (its encoded envelope).
    Put {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its envelope.
        bytes: Vec<u8>,
    },
    /// Remove an object.
    Delete {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// What a stored file holds, as this binary sees it.
#[derive(Debug)]
pub enum Stored<T> {
    /// Written with the current schema.
    Current(T),
    /// Written with an older schema; migrated here in memory.
    Migratable {
        /// The schema in the file.
        from: u32,
        /// The object in the current layout.
        object: T,
    },
    /// Written by a newer schema than this binary reads.
    TooNew {
        /// The schema in the file.
        found: u32,
    },
    /// Not readable, and why.
    Unreadable(String),
}

/// One file of a kind, and what it holds.
#[derive(Debug)]
pub struct Scanned<T> {
    /// The file.
    pub path: PathBuf,
    /// What it holds.
    pub stored: Stored<T>,
}

/// Why objects could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory could not be listed or opened.
    #[error("listing {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file must be migrated before the SC may start on it.
    #[error("{path}: written with schema {found}; migrate it to {current} with `cluster upgrade`")]
    NeedsMigration {
        /// The file.
        path: PathBuf,
        /// The schema in the file.
        found: u32,
        /// The schema this binary writes.
        current: u32,
    },
    /// A file was written by a newer schema than this binary reads.
    #[error(
        "{path}: written with schema {found}, newer than this binary reads ({supported}); use a newer binary"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The schema in the file.
        found: u32,
        /// The newest schema this binary reads.
        supported: u32,
    },
    /// An upgrade was interrupted before it switched generations.
    #[error("an upgrade was interrupted ({0}); run `cluster upgrade` again, or `cluster rollback`")]
    IncompleteUpgrade(String),
}

/// Metadata files of one generation.
#[derive(Clone, Debug)]
pub struct MetadataStore {
    root: PathBuf,
}

/// A file's envelope, with any fields this binary does not know.
#[derive(serde::Deserialize, Serialize)]
struct Envelope {
    schema: u32,
    kind: String,
    name: String,
    spec: Value,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// The active generation's directory name under `data_dir`.
pub fn current_generation(data_dir: &Path) -> io::Result<String> {
    match fs::read_to_string(data_dir.join(CURRENT_FILE)) {
        Ok(name) => Ok(name.trim().to_string()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(FIRST_GENERATION.to_string()),
        Err(err) => Err(err),
    }
}

impl MetadataStore {
    /// The active generation under `data_dir`, created if the data dir is new.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join(current_generation(data_dir)?);
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The generation in the directory `root` (not necessarily the active one).
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// Deletes the leftovers of crashed writes (see [`remove_stale_temps`])
    /// in every kind directory of this generation.
    pub fn remove_stale_temps(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                removed += remove_stale_temps(&entry.path())?;
            }
        }
        Ok(removed)
    }

    /// Where the files live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir<T: Object>(&self) -> PathBuf {
        self.root.join(T::KIND)
    }

    /// The file of an object.
    pub fn path<T: Object>(&self, name: &str) -> PathBuf {
        self.dir::<T>().join(format!("{}.json", file_name(name)))
    }

    /// Reads every object of a kind, strictly: a file that is unreadable,
    /// too new or in need of migration fails the whole load, naming the
    /// file. The SC never starts on a partial or unmigrated view.
    pub fn load_all<T: Object>(&self) -> Result<Vec<T>, LoadError> {
        strictly(self.scan::<T>()?)
    }

    /// Reads every file of a kind and says what each holds; writes nothing.
    pub fn scan<T: Object>(&self) -> Result<Vec<Scanned<T>>, LoadError> {
        self.scan_files::<T>()
    }
}

/// The objects of a scan, if every one of them is current; else the first
/// one that is not, named.
pub fn strictly<T: Object>(scanned: Vec<Scanned<T>>) -> Result<Vec<T>, LoadError> {
    scanned
        .into_iter()
        .map(|scanned| match scanned.stored {
            Stored::Current(object) => Ok(object),
            Stored::Migratable { from, .. } => Err(LoadError::NeedsMigration {
                path: scanned.path,
                found: from,
                current: T::SCHEMA,
            }),
            Stored::TooNew { found } => Err(LoadError::TooNew {
                path: scanned.path,
                found,
                supported: T::SCHEMA,
            }),
            Stored::Unreadable(reason) => Err(LoadError::Unreadable {
                path: scanned.path,
                reason,
            }),
        })
        .collect()
}

impl MetadataStore {
    fn scan_files<T: Object>(&self) -> Result<Vec<Scanned<T>>, LoadError> {
        let dir = self.dir::<T>();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(LoadError::List { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::List {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A temporary file is a write that crashed before its rename:
            // the object it was replacing is still whole. Not an object.
            if !is_temp(&name) && name.ends_with(".json") {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                let stored = read_file::<T>(&path);
                Scanned { path, stored }
            })
            .collect())
    }

    /// Writes an object atomically (temp file, fsync, rename, fsync dir).
    pub fn put<T: Object>(&self, object: &T) -> io::Result<()> {
        self.put_encoded(T::KIND, &object.name(), &encode(object)?)
    }

    /// Writes an encoded object of `kind` atomically.
    pub fn put_encoded(&self, kind: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.root.join(kind);
        fs::create_dir_all(&dir)?;
        write_atomically(&dir, &format!("{}.json", file_name(name)), bytes)
    }

    /// Writes an object into a staging generation: no temporary file and no
    /// sync, because the whole directory becomes visible only by its own
    /// rename, after [`sync_filesystem`] made every file in it durable.
    pub fn put_staged<T: Object>(&self, object: &T) -> io::Result<()> {
        let dir = self.dir::<T>();
        fs::create_dir_all(&dir)?;
        let file = format!("{}.json", file_name(&object.name()));
        fs::write(dir.join(file), encode(object)?)
    }

    /// Removes an object's file, durably.
    pub fn delete<T: Object>(&self, name: &str) -> io::Result<()> {
        self.delete_encoded(T::KIND, name)
    }

    /// Removes the file of `kind`'s object `name`, durably.
    pub fn delete_encoded(&self, kind: &str, name: &str) -> io::Result<()> {
        let dir = self.root.join(kind);
        match fs::remove_file(dir.join(format!("{}.json", file_name(name)))) {
            Ok(()) => sync_dir(&dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// An object as it is stored: its envelope, as JSON.
pub fn encode<T: Object>(object: &T) -> io::Result<Vec<u8>> {
    let envelope = Envelope {
        schema: T::SCHEMA,
        kind: T::KIND.to_string(),
        name: object.name(),
        spec: serde_json::to_value(object).map_err(io::Error::other)?,
        extra: Map::new(),
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads one file.
fn read_file<T: Object>(path: &Path) -> Stored<T> {
    match fs::read_to_string(path) {
        Ok(text) => decode(&text),
        Err(err) => Stored::Unreadable(err.to_string()),
    }
}

/// What a stored object's text holds, as this binary sees it.
pub fn decode<T: Object>(text: &str) -> Stored<T> {
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(err) => return Stored::Unreadable(err.to_string()),
    };
    if envelope.kind != T::KIND {
        return Stored::Unreadable(format!(
            "kind {:?} in the {} directory",
            envelope.kind,
            T::KIND
        ));
    }
    if let Some(field) = envelope.extra.keys().next() {
        // An unknown envelope field could not be carried through a rewrite.
        return Stored::Unreadable(format!("unknown field {field:?} in the envelope"));
    }
    if envelope.schema > T::SCHEMA {
        return Stored::TooNew {
            found: envelope.schema,
        };
    }
    if envelope.schema == T::SCHEMA {
        return match serde_json::from_value(envelope.spec) {
            Ok(object) => Stored::Current(object),
            Err(err) => Stored::Unreadable(format!("spec: {err}")),
        };
    }
    match T::migrate(envelope.schema, envelope.spec) {
        Ok(object) => Stored::Migratable {
            from: envelope.schema,
            object,
        },
        Err(reason) => Stored::Unreadable(format!("schema {}: {reason}", envelope.schema)),
    }
}

/// Object names become file names: keep them to a safe alphabet.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Deletes the temporary files that writes cut short by a crash left in
/// `dir` (see [`write_atomically`]). Each names the process that wrote it;
/// the files of processes still running are left alone, so a write in
/// flight elsewhere is never pulled from under its writer. Returns how many
/// were removed. A missing `dir` has none.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let writer = is_temp(&name)
            .then(|| name.trim_end_matches(".tmp").rsplit_once('.'))
            .flatten()
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let Some(pid) = writer else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `dir/name` so that a crash leaves the old or the new
/// content, never a mix.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes everything written to the filesystem holding `dir` durable, in
/// one call: cheaper than syncing thousands of files one by one.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    rustix::fs::syncfs(&handle)?;
    Ok(())
}

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
