//! What a `mirror-guard` command fails with: one type, each case worded as
//! the command has always printed it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use mg_sc::upgrade::UpgradeError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command-line argument that cannot be used.
    #[error("{flag} {value:?}: {reason}")]
    Argument {
        /// The flag, e.g. `--lead`.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `--lead` role of a kind there is none of.
    #[error("--lead {spec:?}: unknown role {role:?}")]
    UnknownRole {
        /// The whole `--lead` value.
        spec: String,
        /// The role asked for.
        role: String,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// The log filter does not parse.
    #[error("invalid log filter: {0}")]
    LogFilter(String),
    /// The SC did not answer.
    #[error("cannot connect to the SC at {sc}: {reason}")]
    Connect {
        /// Where it was looked for.
        sc: String,
        /// The client's reason.
        reason: String,
    },
    /// A file could not be read or written, or holds something unusable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The official client failed; its own words.
    #[error("{0}")]
    Client(String),
    /// An SPU refused records with an error code.
    #[error("{message}\nerror code {code} ({name})")]
    Refused {
        /// The client's message.
        message: String,
        /// Fluvio's numeric code.
        code: i16,
        /// The code's name.
        name: String,
    },
    /// A mirror action failed or was not confirmed; the SC's words.
    #[error("{0}")]
    Mirror(String),
    /// No local cluster in the data directory.
    #[error("no cluster in {}: {source}", dir.display())]
    NoCluster {
        /// The data directory.
        dir: PathBuf,
        /// Why `cluster.json` could not be read.
        source: io::Error,
    },
    /// `cluster start` where a cluster exists.
    #[error("a cluster already exists in {}; use `cluster resume` or remove the directory", .0.display())]
    ClusterExists(PathBuf),
    /// A cluster needs an SPU.
    #[error("a cluster needs at least one SPU")]
    NoSpu,
    /// The base port leaves no room for the cluster's ports.
    #[error("ports out of range")]
    PortsOutOfRange,
    /// The command needs the cluster stopped.
    #[error("the cluster in {} is running; `cluster shutdown` first", .0.display())]
    Running(PathBuf),
    /// The metadata cannot be used to resume.
    #[error("cannot resume the cluster:\n{0}")]
    Resume(UpgradeError),
    /// The running binary cannot find itself, to start the cluster with.
    #[error("cannot find this executable: {0}")]
    Executable(io::Error),
    /// A process of the cluster could not start.
    #[error("cannot start the {name}: {source}")]
    Spawn {
        /// Which one.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// A process of the cluster ended while it started.
    #[error("process {0} exited during start-up; see the logs")]
    ExitedEarly(u32),
    /// The SPUs did not all come online in time.
    #[error("the cluster was not ready within {timeout:?} ({online}/{expected} SPUs online)")]
    NotReady {
        /// How long it waited.
        timeout: Duration,
        /// SPUs online.
        online: usize,
        /// SPUs expected.
        expected: usize,
    },
    /// No SC metadata to upgrade.
    #[error("no cluster metadata in {}", .0.display())]
    NoMetadata(PathBuf),
    /// `upgrade --check` found objects that cannot be upgraded.
    #[error("some objects cannot be upgraded (see above)")]
    NotUpgradable,
    /// An upgrade step failed.
    #[error("{0}")]
    Upgrade(#[from] UpgradeError),
    /// Reading, writing or running failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What the commands return.
pub type Result<T> = std::result::Result<T, CliError>;
