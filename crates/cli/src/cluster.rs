//! `mirror-guard cluster start|shutdown|resume`: a local cluster of
//! processes on loopback.
//!
//! The cluster's shape (ports, SPU ids) and its processes' ids are kept in
//! `<data dir>/cluster.json`; each process logs to `<data dir>/logs/`.
//! `start` creates a new cluster and returns once the SC answers and every
//! SPU has registered with it; `shutdown` stops the processes and keeps the
//! data; `resume` starts them again on the same data.

use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Subcommand;
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// First SPU id of a local cluster (Fluvio's too).
const FIRST_SPU: i32 = 5001;
/// How long `start` and `resume` wait for the cluster to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `cluster …`
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Start a new local cluster: an SC and `--spus` SPUs.
    Start {
        /// Where the cluster keeps its data (default ~/.mirror-guard/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Number of SPUs.
        #[arg(long, default_value_t = 1)]
        spus: u16,
        /// SC public port; the SC private port and the SPUs' ports follow it.
        #[arg(long, default_value_t = 9003)]
        base_port: u16,
        /// Let mirror traffic in without TLS, remote ids taken as claimed
        /// (a lab with a Fluvio edge without TLS); logged as a warning.
        #[arg(long)]
        insecure_mirroring: bool,
        /// The cluster's CA, given (a directory with `ca.pem` and `ca.key`)
        /// instead of generated.
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        #[command(flatten)]
        store: crate::sc::StoreArgs,
        #[command(flatten)]
        spu: SpuTuning,
    },
    /// Stop the cluster's processes, keeping its data.
    Shutdown {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Start a shut-down cluster again on its data. Refuses metadata that
    /// needs migrating, comes from a newer schema, is unreadable, or sits in
    /// an interrupted upgrade.
    Resume {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Set unreadable metadata objects aside (logged, moved to
        /// `sc/quarantine/`) so the rest of the cluster can start.
        #[arg(long)]
        skip_unreadable: bool,
    },
    /// Upgrade the metadata of a shut-down cluster to this binary's schema
    /// (on the store `cluster.json` names, or on `--store`).
    Upgrade {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: crate::sc::StoreArgs,
        /// Only read and report; exit 0 only if everything can be upgraded.
        #[arg(long)]
        check: bool,
        /// Commit a resumed upgrade; the previous generation is then pruned.
        #[arg(long, conflicts_with = "check")]
        finalize: bool,
        /// Tests only: abort the process at this write step.
        #[cfg(feature = "test-hooks")]
        #[arg(long, hide = true)]
        crash_at_step: Option<u32>,
    },
    /// Before `upgrade --finalize`: restore the previous metadata generation,
    /// so that the previous binary can resume the cluster.
    Rollback {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: crate::sc::StoreArgs,
    },
    /// Move a shut-down cluster's metadata from its files to etcd: every
    /// object is checked first, written under the prefix, and made current
    /// in one transaction; `cluster.json` then names etcd. The files stay.
    MigrateStore {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where to: `etcd://HOST:PORT[,HOST:PORT…]`.
        #[arg(long, value_name = "etcd://HOST:PORT[,…]")]
        to: String,
        /// The cluster's key prefix on etcd; it must hold nothing yet.
        #[arg(long, default_value = "/mirror-guard/default")]
        etcd_prefix: String,
        /// Only check that everything can move; write nothing.
        #[arg(long)]
        check: bool,
    },
}

/// What `cluster.json` records.
#[derive(Debug, Serialize, Deserialize)]
struct ClusterFile {
    sc_public: SocketAddr,
    sc_private: SocketAddr,
    spus: Vec<SpuEntry>,
    #[serde(default)]
    pids: Vec<u32>,
    /// The SC's `/metrics` (absent in files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sc_metrics: Option<SocketAddr>,
    /// Plaintext mirror traffic let in (`--insecure-mirroring`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure_mirroring: bool,
    /// The SC's metadata on etcd (`--store`); files when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// The cluster's key prefix on etcd (`--etcd-prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etcd_prefix: Option<String>,
    /// Flags every SPU starts with (`--fsync`, `--flush-target-us`; none
    /// in files written before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spu_args: Vec<String>,
}

/// How every SPU of the cluster runs: `mirror-guard spu`'s own flags,
/// kept in `cluster.json` so that `cluster resume` starts them alike.
#[derive(clap::Args, Debug)]
pub struct SpuTuning {
    /// When the SPUs force appended data to disk (the SPU's default when
    /// absent: on-commit).
    #[arg(long, value_enum)]
    fsync: Option<crate::Fsync>,
    /// Microseconds a small commit may take before the SPUs pace big syncs
    /// for it (see `mirror-guard spu --help`); off when absent.
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    flush_target_us: Option<u64>,
}

impl SpuTuning {
    /// The SPU command-line flags these settings are.
    fn spu_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(fsync) = self
            .fsync
            .and_then(|f| clap::ValueEnum::to_possible_value(&f))
        {
            args.extend(["--fsync".to_string(), fsync.get_name().to_string()]);
        }
        if let Some(target) = self.flush_target_us {
            args.extend(["--flush-target-us".to_string(), target.to_string()]);
        }
        args
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SpuEntry {
    id: i32,
    public: SocketAddr,
    /// Its `/metrics` (absent in files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<SocketAddr>,
}

/// A cluster's TLS directory: its CA, and the server certificate of its SC
/// and SPUs.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The default data directory of `cluster` commands.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".mirror-guard").join("data"),
        None => PathBuf::from("mirror-guard-data"),
    }
}

pub fn run(command: ClusterCommand) -> ExitCode {
    let result = match command {
        ClusterCommand::Start {
            data_dir,
            spus,
            base_port,
            insecure_mirroring,
            ca_dir,
            store,
            spu,
        } => start(
            &data_dir.unwrap_or_else(default_data_dir),
            spus,
            base_port,
            insecure_mirroring,
            ca_dir.as_deref(),
            &store,
            &spu,
        ),
        ClusterCommand::Shutdown { data_dir } => {
            shutdown(&data_dir.unwrap_or_else(default_data_dir))
        }
        ClusterCommand::Resume {
            data_dir,
            skip_unreadable,
        } => resume(&data_dir.unwrap_or_else(default_data_dir), skip_unreadable),
        ClusterCommand::Upgrade {
            data_dir,
            store,
            check,
            finalize,
            #[cfg(feature = "test-hooks")]
            crash_at_step,
        } => {
            #[cfg(feature = "test-hooks")]
            let steps = mg_sc::upgrade::Steps::crashing_at(crash_at_step);
            #[cfg(not(feature = "test-hooks"))]
            let steps = mg_sc::upgrade::Steps::new();
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            ensure_stopped(&data_dir)
                .and_then(|()| metadata(&data_dir, &store))
                .and_then(|metadata| crate::upgrade::run(&metadata, check, finalize, steps))
        }
        ClusterCommand::Rollback { data_dir, store } => {
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            ensure_stopped(&data_dir)
                .and_then(|()| metadata(&data_dir, &store))
                .and_then(|metadata| crate::upgrade::rollback(&metadata))
        }
        ClusterCommand::MigrateStore {
            data_dir,
            to,
            etcd_prefix,
            check,
        } => {
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            ensure_stopped(&data_dir)
                .and_then(|()| match read(&data_dir) {
                    Ok(ClusterFile {
                        store: Some(store), ..
                    }) => Err(CliError::Client(format!(
                        "the cluster's metadata is on {store} already (cluster.json); nothing to migrate"
                    ))),
                    _ => Ok(()),
                })
                .and_then(|()| {
                crate::upgrade::migrate_store(&data_dir, &to, &etcd_prefix, check, |to| {
                    let mut file = read(&data_dir)?;
                    file.store = Some(to.to_string());
                    file.etcd_prefix = Some(etcd_prefix.clone());
                    write(&data_dir, &file)
                })
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The metadata a `cluster` command acts on: on `--store` if given, else
/// where `cluster.json` says (files when it names no store, or when there
/// is no `cluster.json`, as in a copied SC data directory).
fn metadata(data_dir: &Path, store: &crate::sc::StoreArgs) -> Result<mg_sc::upgrade::Generations> {
    let args = match (&store.store, read(data_dir)) {
        (Some(_), _) => store.clone(),
        (None, Ok(file)) => crate::sc::StoreArgs {
            store: file.store,
            etcd_prefix: file.etcd_prefix.unwrap_or(store.etcd_prefix.clone()),
        },
        (None, Err(_)) => crate::sc::StoreArgs::default(),
    };
    let config = args
        .config()
        .map_err(|reason| CliError::Client(format!("--store: {reason}")))?;
    let sc = data_dir.join("sc");
    if config == mg_sc::persist::StoreConfig::Files && !sc.exists() {
        return Err(CliError::NoMetadata(data_dir.to_path_buf()));
    }
    Ok(mg_sc::upgrade::Generations::open(&sc, &config)?)
}

fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

fn read(data_dir: &Path) -> Result<ClusterFile> {
    let path = file_path(data_dir);
    let text = fs::read_to_string(&path).map_err(|source| CliError::NoCluster {
        dir: data_dir.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::File {
        path,
        reason: e.to_string(),
    })
}

fn write(data_dir: &Path, file: &ClusterFile) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    Ok(mg_sc::store::write_atomically(
        data_dir,
        "cluster.json",
        &bytes,
    )?)
}

fn start(
    data_dir: &Path,
    spus: u16,
    base_port: u16,
    insecure_mirroring: bool,
    ca_dir: Option<&Path>,
    store: &crate::sc::StoreArgs,
    tuning: &SpuTuning,
) -> Result<()> {
    if file_path(data_dir).exists() {
        return Err(CliError::ClusterExists(data_dir.to_path_buf()));
    }
    store
        .config()
        .map_err(|reason| CliError::Client(format!("--store: {reason}")))?;
    if spus == 0 {
        return Err(CliError::NoSpu);
    }
    fs::create_dir_all(data_dir).map_err(|e| CliError::File {
        path: data_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let port = |offset: u16| {
        base_port
            .checked_add(offset)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .ok_or(CliError::PortsOutOfRange)
    };
    let mut file = ClusterFile {
        sc_public: port(0)?,
        sc_private: port(1)?,
        spus: (0..spus)
            .map(|i| {
                Ok(SpuEntry {
                    id: FIRST_SPU + i32::from(i),
                    public: port(2 + i)?,
                    // After the SPUs' public ports: the SC's /metrics, then theirs.
                    metrics: Some(port(3 + spus + i)?),
                })
            })
            .collect::<Result<_>>()?,
        pids: Vec::new(),
        sc_metrics: Some(port(2 + spus)?),
        insecure_mirroring,
        store: store.store.clone(),
        etcd_prefix: store.store.as_ref().map(|_| store.etcd_prefix.clone()),
        spu_args: tuning.spu_args(),
    };
    // The cluster's CA, for mirroring over mutual TLS: it signs the SC's
    // and SPUs' server certificate here, and each remote's at `remote export`.
    mg_pki::init_home_with(
        &tls_dir(data_dir),
        mg_pki::DEFAULT_DOMAIN,
        &["localhost", "127.0.0.1"],
        ca_dir,
    )
    .map_err(|err| CliError::File {
        path: tls_dir(data_dir),
        reason: err.to_string(),
    })?;
    write(data_dir, &file)?;
    launch(data_dir, &mut file)?;
    println!(
        "✓ local cluster started: SC at {}, {} SPU(s), data in {}",
        file.sc_public,
        spus,
        data_dir.display()
    );
    print_metrics(&file);
    Ok(())
}

fn resume(data_dir: &Path, skip_unreadable: bool) -> Result<()> {
    let mut file = read(data_dir)?;
    ensure_stopped(data_dir)?;
    let metadata = metadata(data_dir, &crate::sc::StoreArgs::default())?;
    let set_aside =
        mg_sc::upgrade::resume_check(&metadata, skip_unreadable).map_err(CliError::Resume)?;
    drop(metadata);
    for path in set_aside {
        eprintln!(
            "warning: set aside unreadable metadata {} (see the quarantine)",
            path.display()
        );
    }
    launch(data_dir, &mut file)?;
    println!(
        "✓ local cluster resumed: SC at {}, {} SPU(s)",
        file.sc_public,
        file.spus.len()
    );
    print_metrics(&file);
    Ok(())
}

/// Where each process serves `/metrics`.
fn print_metrics(file: &ClusterFile) {
    let mut at: Vec<String> = file
        .sc_metrics
        .iter()
        .map(|addr| format!("SC http://{addr}/metrics"))
        .collect();
    at.extend(file.spus.iter().filter_map(|spu| {
        spu.metrics
            .map(|addr| format!("SPU {} http://{addr}/metrics", spu.id))
    }));
    if !at.is_empty() {
        println!("  metrics: {}", at.join(", "));
    }
}

/// Refuses to act on a cluster whose processes are running.
pub(crate) fn ensure_stopped(data_dir: &Path) -> Result<()> {
    if let Ok(file) = read(data_dir)
        && file.pids.iter().any(|pid| alive(*pid))
    {
        return Err(CliError::Running(data_dir.to_path_buf()));
    }
    Ok(())
}

fn shutdown(data_dir: &Path) -> Result<()> {
    let mut file = read(data_dir)?;
    for pid in file.pids.iter().rev() {
        stop(*pid);
    }
    file.pids.clear();
    write(data_dir, &file)?;
    println!(
        "✓ local cluster stopped; its data stays in {}",
        data_dir.display()
    );
    Ok(())
}

/// Starts the SC and the SPUs, records their pids, waits until ready.
fn launch(data_dir: &Path, file: &mut ClusterFile) -> Result<()> {
    let exe = std::env::current_exe().map_err(CliError::Executable)?;
    let logs = data_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let spawn = |name: &str, args: Vec<String>| -> Result<u32> {
        let log = File::create(logs.join(format!("{name}.log")))?;
        let err = log.try_clone()?;
        use std::os::unix::process::CommandExt;
        let child = Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: a Ctrl-C at the terminal that ran
            // `cluster start` does not reach the cluster.
            .process_group(0)
            .spawn()
            .map_err(|source| CliError::Spawn {
                name: name.to_string(),
                source,
            })?;
        Ok(child.id())
    };
    let mut sc_args = vec![
        "sc".to_string(),
        "--data-dir".into(),
        data_dir.join("sc").display().to_string(),
        "--public".into(),
        file.sc_public.to_string(),
        "--private".into(),
        file.sc_private.to_string(),
    ];
    for spu in &file.spus {
        sc_args.push("--spu".into());
        sc_args.push(format!("{}={}", spu.id, spu.public));
    }
    let mut mirroring = Vec::new();
    if tls_dir(data_dir).join(mg_pki::CA_CERT).exists() {
        mirroring.push("--tls-dir".to_string());
        mirroring.push(tls_dir(data_dir).display().to_string());
    }
    if file.insecure_mirroring {
        mirroring.push("--insecure-mirroring".to_string());
    }
    sc_args.extend(mirroring.iter().cloned());
    if let Some(url) = &file.store {
        sc_args.extend(["--store".to_string(), url.clone()]);
        if let Some(prefix) = &file.etcd_prefix {
            sc_args.extend(["--etcd-prefix".to_string(), prefix.clone()]);
        }
    }
    if let Some(metrics) = file.sc_metrics {
        sc_args.push("--metrics-port".into());
        sc_args.push(metrics.port().to_string());
    }
    file.pids = vec![spawn("sc", sc_args)?];
    for spu in &file.spus {
        let args = vec![
            "spu".to_string(),
            "--id".into(),
            spu.id.to_string(),
            "--listen".into(),
            spu.public.to_string(),
            "--data-dir".into(),
            data_dir
                .join(format!("spu-{}", spu.id))
                .display()
                .to_string(),
            "--sc".into(),
            file.sc_private.to_string(),
        ];
        let mut args: Vec<String> = args
            .into_iter()
            .chain(mirroring.iter().cloned())
            .chain(file.spu_args.iter().cloned())
            .collect();
        if let Some(metrics) = spu.metrics {
            args.push("--metrics-port".into());
            args.push(metrics.port().to_string());
        }
        file.pids.push(spawn(&format!("spu-{}", spu.id), args)?);
    }
    write(data_dir, file)?;
    wait_ready(file).inspect_err(|_| {
        for pid in &file.pids {
            stop(*pid);
        }
    })
}

/// Waits until the SC answers and lists every SPU as online.
fn wait_ready(file: &ClusterFile) -> Result<()> {
    use fluvio::metadata::spu::SpuSpec;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let expected = file.spus.len();
    runtime.block_on(async {
        loop {
            if let Some(pid) = file.pids.iter().find(|pid| !alive(**pid)) {
                return Err(CliError::ExitedEarly(*pid));
            }
            let config = fluvio::FluvioClusterConfig::new(file.sc_public.to_string());
            let online = match tokio::time::timeout(
                Duration::from_secs(5),
                fluvio::Fluvio::connect_with_config(&config),
            )
            .await
            {
                Ok(Ok(fluvio)) => match fluvio.admin().await.all::<SpuSpec>().await {
                    Ok(spus) => spus.iter().filter(|s| s.status.is_online()).count(),
                    Err(_) => 0,
                },
                _ => 0,
            };
            if online >= expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CliError::NotReady {
                    timeout: READY_TIMEOUT,
                    online,
                    expected,
                });
            }
            // Another process's start-up: nothing to await but its ports.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A pid as the kernel takes it; none for 0 or one out of range.
fn process(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether a process exists.
fn alive(pid: u32) -> bool {
    process(pid).is_some_and(|pid| test_kill_process(pid).is_ok())
}

/// Sends SIGTERM and waits for the process to end; SIGKILL after 10 s.
fn stop(pid: u32) {
    let Some(target) = process(pid) else {
        return;
    };
    let _ = kill_process(target, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = kill_process(target, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_processes() {
        assert!(alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid), "a reaped child is gone");
    }
}
