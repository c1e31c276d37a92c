//! Persistence: one file per object, written atomically.
//!
//! Layout: `<data dir>/metadata/<kind>/<name>.json`. Each file is an envelope
//! `{ "schema": N, "kind": …, "name": …, "spec": {…} }` recording the schema
//! version it was written with; fields this binary does not know are kept
//! and written back unchanged.
//!
//! A write goes to a temporary file in the same directory, which is synced,
//! renamed over the target, and then the directory is synced: after a crash
//! the file holds either the old object or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A kind of object the SC persists.
pub trait Object: Serialize + DeserializeOwned {
    /// Directory name, and the `kind` recorded in each file.
    const KIND: &'static str;
    /// The schema version this binary writes.
    const SCHEMA: u32;
    /// The object's name, unique within its kind; also its file name.
    fn name(&self) -> String;
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory could not be listed.
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
    /// A file was written by a newer schema than this binary reads.
    #[error("{path}: written with schema {found}, this binary reads up to {supported}")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The schema in the file.
        found: u32,
        /// The newest schema this binary reads.
        supported: u32,
    },
}

/// Metadata files under one data directory.
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

impl MetadataStore {
    /// The store under `<data_dir>/metadata`, created if missing.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("metadata");
        fs::create_dir_all(&root)?;
        Ok(Self { root })
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

    /// Reads every object of a kind. Any unreadable file fails the whole
    /// load, naming the file: one bad object must never silently vanish.
    pub fn load_all<T: Object>(&self) -> Result<Vec<T>, LoadError> {
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
            if is_temp(&name) {
                // A write that crashed before its rename: the object it was
                // replacing is still whole. Clean it up.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if name.ends_with(".json") {
                paths.push(entry.path());
            }
        }
        paths.sort();
        paths.iter().map(|path| self.read_file::<T>(path)).collect()
    }

    fn read_file<T: Object>(&self, path: &Path) -> Result<T, LoadError> {
        let unreadable = |reason: String| LoadError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let envelope: Envelope =
            serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        if envelope.kind != T::KIND {
            return Err(unreadable(format!(
                "kind {:?} in the {} directory",
                envelope.kind,
                T::KIND
            )));
        }
        if envelope.schema > T::SCHEMA {
            return Err(LoadError::TooNew {
                path: path.to_path_buf(),
                found: envelope.schema,
                supported: T::SCHEMA,
            });
        }
        serde_json::from_value(envelope.spec).map_err(|e| unreadable(format!("spec: {e}")))
    }

    /// Writes an object atomically (temp file, fsync, rename, fsync dir).
    pub fn put<T: Object>(&self, object: &T) -> io::Result<()> {
        let dir = self.dir::<T>();
        fs::create_dir_all(&dir)?;
        let name = object.name();
        let envelope = Envelope {
            schema: T::SCHEMA,
            kind: T::KIND.to_string(),
            name: name.clone(),
            spec: serde_json::to_value(object).map_err(io::Error::other)?,
            extra: Map::new(),
        };
        let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomically(&dir, &format!("{}.json", file_name(&name)), &bytes)
    }

    /// Removes an object's file, durably.
    pub fn delete<T: Object>(&self, name: &str) -> io::Result<()> {
        let dir = self.dir::<T>();
        match fs::remove_file(self.path::<T>(name)) {
            Ok(()) => sync_dir(&dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
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

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
