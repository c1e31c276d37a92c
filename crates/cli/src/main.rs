//! # mirror-guard: the command line
//!
//! - `mirror-guard spu` and `mirror-guard sc` run one server each.
//! - `mirror-guard cluster start|shutdown|resume` manages a local cluster of
//!   those processes on loopback (`cluster`).
//! - `topic`, `partition`, `remote`, `produce`, `consume` talk to a cluster
//!   through the official `fluvio` 0.50.1 client, with Fluvio's verbs and
//!   output (`client`).
//!
//! An SPU's roles arrive from the SC over the control plane; until then it
//! refuses every produce as not-leader, which is the safe default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mg_roles::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig, ReplicaRole, RoleUpdate,
};
use mg_spu::{Spu, SpuConfig};
use mg_storage::FsyncPolicy;
use tracing_subscriber::EnvFilter;

use crate::error::CliError;

mod client;
mod cluster;
mod error;
mod operate;
mod output;
mod sc;
mod target;
mod upgrade;

#[derive(Parser, Debug)]
#[command(
    name = "mirror-guard",
    version,
    about = "Fluvio mirror topics, guarded at the SPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an SPU: Fluvio 0.50 clients produce to and fetch from it.
    Spu(SpuArgs),
    /// Run an SC: metadata, mirror roles, and their distribution to SPUs.
    Sc(sc::ScArgs),
    /// Start, stop and resume a local cluster (an SC and SPUs on loopback).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Topics: create, list, delete.
    #[command(subcommand)]
    Topic(client::TopicCommand),
    /// Partitions: list.
    #[command(subcommand)]
    Partition(client::PartitionCommand),
    /// Remote clusters, on the home: register, list, export, unregister.
    #[command(subcommand)]
    Remote(client::RemoteCommand),
    /// The home cluster, on a remote: connect, status.
    #[command(subcommand)]
    Home(client::HomeCommand),
    /// Produce lines from stdin, one record each.
    Produce(client::ProduceArgs),
    /// Consume records and print their values.
    Consume(client::ConsumeArgs),
}

#[derive(Parser, Debug)]
struct SpuArgs {
    /// Address clients connect to (Fluvio's SPU public port is 9005).
    #[arg(long, default_value = "127.0.0.1:9005")]
    listen: SocketAddr,
    /// Directory for partition logs.
    #[arg(long)]
    data_dir: PathBuf,
    /// This SPU's id, as the SC knows it.
    #[arg(long, default_value_t = 5001)]
    id: i32,
    /// Port for the Prometheus `/metrics` endpoint on 127.0.0.1 (none if absent).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = mg_wire_default_max_frame())]
    max_frame: usize,
    /// How long a frame may take from its first byte to its last, in
    /// seconds; a connection whose frame stalls longer is closed.
    #[arg(long, default_value_t = 30)]
    read_timeout: u64,
    /// Client connections served at once; more are closed on arrival.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds connections get to finish their request at shutdown.
    #[arg(long, default_value_t = 5)]
    drain_timeout: u64,
    /// The home's TLS directory (`ca.pem`, `server.pem`, `server.key`):
    /// remotes mirror over TLS with a certificate of that CA.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Let plaintext mirror traffic in, remote ids taken as claimed (a lab
    /// with a Fluvio edge without TLS); logged as a warning.
    #[arg(long)]
    insecure_mirroring: bool,
    /// Writer threads appending to the partition logs (default 8); each
    /// takes whichever partition has waited longest.
    #[arg(long)]
    storage_lanes: Option<usize>,
    /// When appended data is forced to disk.
    #[arg(long, value_enum, default_value_t = Fsync::OnCommit)]
    fsync: Fsync,
    /// Microseconds a small commit may take before big syncs are paced
    /// for it (their chunks pause, longer while small commits run late);
    /// off when not given. Trades big writers' bandwidth for small
    /// commits' latency.
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    flush_target_us: Option<u64>,
    /// Lead a partition with a static role, for running without an SC:
    /// `TOPIC:PARTITION`, optionally `=home:REMOTE`, `=home-source:REMOTE`,
    /// `=remote:HOME` or `=remote-target:HOME`. Repeatable.
    #[arg(long = "lead", value_name = "TOPIC:PARTITION[=ROLE]")]
    lead: Vec<String>,
    /// The SC's private endpoint, where roles come from; with SC high
    /// availability every SC's, comma-separated (the SPU finds the active).
    #[arg(long, value_delimiter = ',')]
    sc: Vec<SocketAddr>,
    /// Benchmark builds only: skip the guard, to measure what it costs.
    #[cfg(feature = "bench-hooks")]
    #[arg(long, hide = true)]
    bench_disable_guard: bool,
}

const fn mg_wire_default_max_frame() -> usize {
    52_428_800
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Fsync {
    Always,
    OnCommit,
    Never,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Spu(args) => run_spu(args),
        Command::Sc(args) => sc::run(args),
        Command::Cluster(command) => cluster::run(command),
        Command::Topic(command) => client::run(client::Command::Topic(command)),
        Command::Partition(command) => client::run(client::Command::Partition(command)),
        Command::Remote(command) => client::run(client::Command::Remote(command)),
        Command::Home(command) => client::run(client::Command::Home(command)),
        Command::Produce(args) => client::run(client::Command::Produce(args)),
        Command::Consume(args) => client::run(client::Command::Consume(args)),
    }
}

/// A multi-threaded tokio runtime, or the reason there is none.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

pub(crate) fn init_logging(level: &str) -> Result<(), CliError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::try_new(filter),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| CliError::LogFilter(err.to_string()))?;
    // Colours only for a terminal: `cluster start` sends the output to
    // log files, which must read as plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    Ok(())
}

fn run_spu(args: SpuArgs) -> ExitCode {
    if let Err(err) = init_logging(&args.log_level) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let mut config = SpuConfig::new(args.id, args.data_dir);
    config.listen = args.listen;
    config.metrics_listen = args
        .metrics_port
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
    config.max_frame = args.max_frame;
    config.read_timeout = std::time::Duration::from_secs(args.read_timeout);
    config.max_connections = args.max_connections;
    config.drain_timeout = std::time::Duration::from_secs(args.drain_timeout);
    if let Some(lanes) = args.storage_lanes {
        config.storage_lanes = lanes;
    }
    config.sc = args.sc.first().copied();
    config.sc_standbys = args.sc.iter().skip(1).copied().collect();
    config.tls_dir = args.tls_dir;
    config.insecure_mirroring = args.insecure_mirroring;
    #[cfg(feature = "bench-hooks")]
    {
        config.guard_enabled = !args.bench_disable_guard;
    }
    let roles = match args
        .lead
        .iter()
        .map(|spec| static_role(spec, args.id))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(roles) => roles,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    config.flush_target = args.flush_target_us.map(std::time::Duration::from_micros);
    config.log.fsync = match args.fsync {
        Fsync::Always => FsyncPolicy::Always,
        Fsync::OnCommit => FsyncPolicy::OnCommit,
        Fsync::Never => FsyncPolicy::Never,
    };
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let spu = Spu::new(config)?;
        if !roles.is_empty() {
            spu.roles().apply(RoleUpdate::Sync {
                epoch: 0,
                all: roles,
            });
        }
        let running = spu.start().await?;
        // Printed for scripts and tests that start us on port 0.
        println!("spu {} listening on {}", args.id, running.addr());
        if let Some(metrics) = running.metrics_addr() {
            println!("metrics on http://{metrics}/metrics");
        }
        running.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `TOPIC:PARTITION[=ROLE]` into a role this SPU leads.
fn static_role(spec: &str, spu: i32) -> Result<ReplicaRole, CliError> {
    let invalid = |reason| CliError::Argument {
        flag: "--lead",
        value: spec.to_string(),
        reason,
    };
    let (partition_spec, role) = match spec.split_once('=') {
        Some((p, r)) => (p, Some(r)),
        None => (spec, None),
    };
    let (topic, partition) = partition_spec
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected TOPIC:PARTITION"))?;
    let partition: u32 = partition
        .parse()
        .map_err(|_| invalid("partition must be a number"))?;
    let mirror = match role.map(|r| r.split_once(':').unwrap_or((r, ""))) {
        None => None,
        Some((kind, peer)) if !peer.is_empty() => Some(match kind {
            "home" | "home-source" => PartitionMirrorConfig::Home(HomePartitionConfig {
                remote_cluster: peer.to_string(),
                remote_replica: format!("{topic}-0"),
                source: kind == "home-source",
            }),
            "remote" | "remote-target" => PartitionMirrorConfig::Remote(RemotePartitionConfig {
                home_cluster: peer.to_string(),
                target: kind == "remote-target",
                ..Default::default()
            }),
            other => {
                return Err(CliError::UnknownRole {
                    spec: spec.to_string(),
                    role: other.to_string(),
                });
            }
        }),
        Some(_) => {
            return Err(invalid("a role needs a peer cluster, e.g. home:edge1"));
        }
    };
    Ok(ReplicaRole {
        topic: topic.to_string(),
        partition,
        leader: spu,
        mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_roles_parse() {
        let plain = static_role("orders:3", 7).unwrap();
        assert_eq!(
            (
                plain.topic.as_str(),
                plain.partition,
                plain.leader,
                plain.mirror
            ),
            ("orders", 3, 7, None)
        );
        let home = static_role("m:0=home:edge1", 7).unwrap();
        assert!(
            matches!(home.mirror, Some(PartitionMirrorConfig::Home(h)) if h.remote_cluster == "edge1" && !h.source)
        );
        let target = static_role("m:0=remote-target:home", 7).unwrap();
        assert!(
            matches!(target.mirror, Some(PartitionMirrorConfig::Remote(r)) if r.home_cluster == "home" && r.target)
        );
        for bad in ["orders", "orders:x", "m:0=home", "m:0=sideways:x"] {
            assert!(static_role(bad, 7).is_err(), "{bad}");
        }
    }
}
