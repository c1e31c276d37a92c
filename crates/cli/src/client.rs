//! Commands that talk to a running cluster through the official `fluvio`
//! 0.50.1 client, with Fluvio's verbs and output.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::{HomeMirrorConfig, MirrorConfig, TopicSpec};
use fluvio::{ConsumerConfig, Fluvio, FluvioClusterConfig, Offset, RecordKey};
use fluvio_controlplane_metadata::mirror::{Home, MirrorSpec, MirrorStatus, MirrorType, Remote};
use fluvio_sc_schema::remote_file::RemoteMetadataExport;
use futures_util::StreamExt;

use crate::error::{CliError, Result};
use crate::operate::MirrorActionArgs;
use crate::output::{Output, print_table};
use crate::target::Target;
use mg_controlplane::operate::{MirrorAction, MirrorPartitionRow};

/// `topic …`
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic; with --mirror-apply, a mirror topic with one
    /// partition per remote listed in the JSON file.
    Create {
        /// Topic name.
        name: String,
        /// Partitions of a plain topic.
        #[arg(short = 'p', long, default_value_t = 1)]
        partitions: u32,
        /// JSON list of registered remotes, e.g. ["edge1", "edge2"].
        #[arg(long)]
        mirror_apply: Option<PathBuf>,
        /// Mirror from home to the remotes instead of from them.
        #[arg(long, requires = "mirror_apply")]
        home_to_remote: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List topics.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// On the cluster that receives a mirror topic: wait until it is in
    /// sync, then end mirroring; the partition becomes an ordinary
    /// writable one, and the sender is fenced off for good.
    Promote(MirrorActionArgs),
    /// Like promote, at once, without waiting: for when the sender is gone.
    Failover(MirrorActionArgs),
    /// Stop mirroring for now: the records wait at the sender, and the
    /// partition stays read-only to clients.
    MirrorPause(MirrorActionArgs),
    /// Start mirroring again: it catches up from where it stopped.
    MirrorResume(MirrorActionArgs),
}

/// `partition …`
#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// List partitions.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// `remote …`
#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Register a remote cluster that may mirror to this home.
    Register {
        /// The remote's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// List registered remotes: their pairing, then each mirror partition.
    List {
        /// Output format.
        #[arg(short = 'O', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        target: Target,
    },
    /// Unregister a remote: its mirroring stream and links end at once;
    /// its partitions stay, read-only, with their records.
    Unregister {
        /// The remote's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Write the file a remote needs to connect to this home (Fluvio's
    /// `RemoteMetadataExport` JSON), to --file or stdout.
    Export {
        /// The registered remote's id.
        id: String,
        /// Where to write it (mode 0600); stdout if not given.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// The home SC's endpoint as the remote reaches it (default: --sc).
        #[arg(short = 'e', long)]
        public_endpoint: Option<String>,
        /// This home's id, as the remote will know it.
        #[arg(long, default_value = "home")]
        home_id: String,
        /// The home's TLS directory, whose CA issues the remote's
        /// certificate (default: `tls` in the default cluster data dir).
        #[arg(long, env = "MIRROR_GUARD_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        /// Refuse every certificate issued to this remote before this one.
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// `home …`, on a remote cluster
#[derive(Subcommand, Debug)]
pub enum HomeCommand {
    /// Connect this cluster to the home described in a file from
    /// `remote export` (ours or Fluvio's).
    Connect {
        /// The exported file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Show the pairing with the home, then each mirror partition.
    Status {
        /// Output format.
        #[arg(short = 'O', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        target: Target,
    },
}

/// `produce TOPIC`
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to produce to.
    topic: String,
    /// Send every record to this partition (default: Fluvio's partitioner,
    /// round-robin for records without a key).
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    #[command(flatten)]
    target: Target,
}

/// `consume TOPIC`
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    topic: String,
    /// Partition.
    #[arg(short = 'p', long, default_value_t = 0)]
    partition: u32,
    /// Start from the beginning instead of the end.
    #[arg(short = 'B', long)]
    beginning: bool,
    /// Stop at the end of the records present now.
    #[arg(short = 'd', long)]
    disable_continuous: bool,
    #[command(flatten)]
    target: Target,
}

/// A client command.
pub enum Command {
    /// `topic …`
    Topic(TopicCommand),
    /// `partition …`
    Partition(PartitionCommand),
    /// `remote …`
    Remote(RemoteCommand),
    /// `home …`
    Home(HomeCommand),
    /// `produce …`
    Produce(ProduceArgs),
    /// `consume …`
    Consume(ConsumeArgs),
}

/// The official client's failure, in its own words.
fn failed(err: impl std::fmt::Display) -> CliError {
    CliError::Client(err.to_string())
}

pub fn run(command: Command) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// The official client, connected to the first SC of `--sc` that answers
/// (a highly available cluster lists them all; only the active listens).
async fn connect(target: &Target) -> Result<Fluvio> {
    let mut reason = String::from("no SC endpoint given");
    for endpoint in target
        .sc
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match Fluvio::connect_with_config(&FluvioClusterConfig::new(endpoint)).await {
            Ok(fluvio) => return Ok(fluvio),
            Err(err) => reason = err.to_string(),
        }
    }
    Err(CliError::Connect {
        sc: target.sc.clone(),
        reason,
    })
}

/// A client certificate for remote `id` from the home CA in `tls_dir`
/// (CN = the remote's id), in the export's form; the home's SC and SPUs
/// accept it from then on (with `rotate`, it alone).
fn issue(
    tls_dir: &std::path::Path,
    id: &str,
    rotate: bool,
) -> Result<fluvio_controlplane_metadata::mirror::ClientTls> {
    let pki = |err: mg_pki::PkiError| {
        CliError::Client(format!("home CA in {}: {err}", tls_dir.display()))
    };
    let ca = mg_pki::Ca::load(tls_dir).map_err(pki)?;
    let issued = ca.issue_client(id, mg_pki::DEFAULT_VALIDITY).map_err(pki)?;
    mg_pki::record_issued(tls_dir, id, &issued.fingerprint, rotate).map_err(pki)?;
    Ok(fluvio_controlplane_metadata::mirror::ClientTls {
        domain: mg_pki::domain(tls_dir).map_err(pki)?,
        ca_cert: ca.cert_pem(),
        client_cert: issued.cert_pem,
        client_key: issued.key_pem,
    })
}

/// Every mirror object of the cluster at `target`, with its status.
async fn mirrors(target: &Target) -> Result<Vec<fluvio_sc_schema::objects::Metadata<MirrorSpec>>> {
    let fluvio = connect(target).await?;
    let admin = fluvio.admin().await;
    admin.all::<MirrorSpec>().await.map_err(failed)
}

async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Topic(TopicCommand::Create {
            name,
            partitions,
            mirror_apply,
            home_to_remote,
            target,
        }) => {
            let spec = match mirror_apply {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).map_err(|e| CliError::File {
                        path: file.clone(),
                        reason: e.to_string(),
                    })?;
                    let remotes: Vec<String> =
                        serde_json::from_str(&text).map_err(|e| CliError::File {
                            path: file.clone(),
                            reason: format!("expected a JSON list of remote names: {e}"),
                        })?;
                    let mut home = HomeMirrorConfig::from_simple(&name, remotes);
                    home.set_home_to_remote(home_to_remote);
                    TopicSpec::new_mirror(MirrorConfig::Home(home))
                }
                None => TopicSpec::new_computed(partitions, 1, None),
            };
            let fluvio = connect(&target).await?;
            fluvio
                .admin()
                .await
                .create(name.clone(), false, spec)
                .await
                .map_err(failed)?;
            println!("topic \"{name}\" created");
            Ok(())
        }
        Command::Topic(TopicCommand::List { target }) => {
            let fluvio = connect(&target).await?;
            let topics = fluvio
                .admin()
                .await
                .all::<TopicSpec>()
                .await
                .map_err(failed)?;
            if topics.is_empty() {
                println!("No topics found");
                return Ok(());
            }
            let mirrors = mirror_rows(&target).await;
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.spec.replicas().type_label().to_string(),
                        t.spec.partitions().to_string(),
                        t.status.resolution().resolution_label().to_string(),
                        topic_mirror_states(&mirrors, &t.name),
                    ]
                })
                .collect();
            print_table(&["NAME", "TYPE", "PARTITIONS", "STATUS", "MIRRORING"], rows);
            Ok(())
        }
        Command::Topic(TopicCommand::Promote(args)) => {
            crate::operate::act(MirrorAction::Promote, args).await
        }
        Command::Topic(TopicCommand::Failover(args)) => {
            crate::operate::act(MirrorAction::Failover, args).await
        }
        Command::Topic(TopicCommand::MirrorPause(args)) => {
            crate::operate::act(MirrorAction::Pause, args).await
        }
        Command::Topic(TopicCommand::MirrorResume(args)) => {
            crate::operate::act(MirrorAction::Resume, args).await
        }
        Command::Topic(TopicCommand::Delete { name, target }) => {
            let fluvio = connect(&target).await?;
            fluvio
                .admin()
                .await
                .delete::<TopicSpec>(name.clone())
                .await
                .map_err(failed)?;
            println!("topic \"{name}\" deleted");
            Ok(())
        }
        Command::Partition(PartitionCommand::List { target }) => {
            let fluvio = connect(&target).await?;
            let partitions = fluvio
                .admin()
                .await
                .all::<PartitionSpec>()
                .await
                .map_err(failed)?;
            let mirrors = mirror_rows(&target).await;
            let rows = partitions
                .iter()
                .map(|p| {
                    let (topic, index) = p.name.rsplit_once('-').unwrap_or((p.name.as_str(), ""));
                    let state = mirrors
                        .iter()
                        .find(|m| m.topic == topic && m.partition.to_string() == index)
                        .map_or("-".to_string(), |m| m.state.clone());
                    vec![
                        topic.to_string(),
                        index.to_string(),
                        p.spec.leader.to_string(),
                        p.spec.mirror_string(),
                        state,
                        format!("{:?}", p.status.resolution),
                        p.status.leader.hw.to_string(),
                        p.status.leader.leo.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "LEADER",
                    "MIRROR",
                    "MIRRORING",
                    "RESOLUTION",
                    "HW",
                    "LEO",
                ],
                rows,
            );
            Ok(())
        }
        Command::Remote(RemoteCommand::Register { id, target }) => {
            let fluvio = connect(&target).await?;
            let spec = MirrorSpec {
                mirror_type: MirrorType::Remote(Remote { id: id.clone() }),
            };
            fluvio
                .admin()
                .await
                .create(id.clone(), false, spec)
                .await
                .map_err(failed)?;
            println!("remote cluster \"{id}\" was registered");
            Ok(())
        }
        Command::Remote(RemoteCommand::List { output, target }) => {
            let rows = mirrors(&target)
                .await?
                .into_iter()
                .filter(|m| matches!(m.spec.mirror_type, MirrorType::Remote(_)))
                .map(|m| pairing_row(m.name, "remote".into(), m.status))
                .collect();
            let partitions = crate::operate::report(&target).await?;
            print_mirrors(rows, &partitions, output);
            Ok(())
        }
        Command::Remote(RemoteCommand::Export {
            id,
            file,
            public_endpoint,
            home_id,
            tls_dir,
            rotate,
            target,
        }) => {
            let mirrors = mirrors(&target).await?;
            let registered = mirrors
                .iter()
                .any(|m| matches!(&m.spec.mirror_type, MirrorType::Remote(r) if r.id == id));
            if !registered {
                return Err(CliError::Client(format!(
                    "remote cluster \"{id}\" is not registered: run `remote register {id}` first"
                )));
            }
            let tls_dir = tls_dir
                .unwrap_or_else(|| crate::cluster::tls_dir(&crate::cluster::default_data_dir()));
            let client_tls = if tls_dir.join(mg_pki::CA_KEY).exists() {
                if file.is_none() {
                    return Err(CliError::Client(
                        "the export carries the remote's private key: give --file (written with mode 0600)".into(),
                    ));
                }
                Some(issue(&tls_dir, &id, rotate)?)
            } else {
                eprintln!(
                    "warning: no home CA in {}: the export carries no certificate, and the remote can mirror only with a home run with --insecure-mirroring",
                    tls_dir.display()
                );
                None
            };
            let export = RemoteMetadataExport {
                topics: Vec::new(),
                home: Home {
                    id: home_id,
                    remote_id: id.clone(),
                    public_endpoint: public_endpoint.unwrap_or(target.sc),
                    client_tls,
                },
            };
            let json = serde_json::to_string_pretty(&export).map_err(failed)?;
            match file {
                Some(path) => {
                    mg_pki::write_private(&path, json.as_bytes()).map_err(|err| {
                        CliError::Client(format!("cannot write {}: {err}", path.display()))
                    })?;
                    println!("remote \"{id}\" exported to {}", path.display());
                }
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Home(HomeCommand::Connect { file, target }) => {
            let text = std::fs::read_to_string(&file).map_err(|err| {
                CliError::Client(format!("cannot read {}: {err}", file.display()))
            })?;
            let export: RemoteMetadataExport = serde_json::from_str(&text).map_err(|err| {
                CliError::Client(format!(
                    "{} is not a remote export file: {err}",
                    file.display()
                ))
            })?;
            let home = export.home;
            if home.id.is_empty() || home.remote_id.is_empty() || home.public_endpoint.is_empty() {
                return Err(CliError::Client(format!(
                    "{}: the home's id, remote id and public endpoint must all be set",
                    file.display()
                )));
            }
            let fluvio = connect(&target).await?;
            let name = home.id.clone();
            let spec = MirrorSpec {
                mirror_type: MirrorType::Home(home),
            };
            fluvio
                .admin()
                .await
                .create(name.clone(), false, spec)
                .await
                .map_err(failed)?;
            println!("connecting with \"{name}\" cluster");
            Ok(())
        }
        Command::Home(HomeCommand::Status { output, target }) => {
            let mirrors = mirrors(&target).await?;
            let rows: Vec<Vec<String>> = mirrors
                .into_iter()
                .filter_map(|m| match &m.spec.mirror_type {
                    MirrorType::Home(home) => {
                        let route = format!("{} -> {}", home.remote_id, home.public_endpoint);
                        Some(pairing_row(m.name, route, m.status))
                    }
                    MirrorType::Remote(_) => None,
                })
                .collect();
            if rows.is_empty() {
                return Err(CliError::Client(
                    "this cluster is connected to no home: run `home connect --file F`".into(),
                ));
            }
            let partitions = crate::operate::report(&target).await?;
            print_mirrors(rows, &partitions, output);
            Ok(())
        }
        Command::Remote(RemoteCommand::Unregister { id, target }) => {
            let fluvio = connect(&target).await?;
            fluvio
                .admin()
                .await
                .delete::<MirrorSpec>(id.clone())
                .await
                .map_err(failed)?;
            println!("remote cluster \"{id}\" was unregistered");
            Ok(())
        }
        Command::Produce(ProduceArgs {
            topic,
            partition,
            target,
        }) => {
            let fluvio = connect(&target).await?;
            let producer = match partition {
                None => fluvio.topic_producer(topic).await.map_err(failed)?,
                Some(partition) => {
                    let config = fluvio::TopicProducerConfigBuilder::default()
                        .set_specific_partitioner(partition)
                        .build()
                        .map_err(failed)?;
                    fluvio
                        .topic_producer_with_config(topic, config)
                        .await
                        .map_err(failed)?
                }
            };
            let mut outputs = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(failed)?;
                outputs.push(producer.send(RecordKey::NULL, line).await.map_err(failed)?);
            }
            producer.flush().await.map_err(failed)?;
            for output in outputs {
                // A refused batch surfaces here: Fluvio's text, then the code.
                output.wait().await.map_err(|err| with_code(&err))?;
            }
            Ok(())
        }
        Command::Consume(ConsumeArgs {
            topic,
            partition,
            beginning,
            disable_continuous,
            target,
        }) => {
            let fluvio = connect(&target).await?;
            #[allow(deprecated)] // the 0.50 client's single-partition consumer
            let consumer = fluvio
                .partition_consumer(topic, partition)
                .await
                .map_err(failed)?;
            let offset = if beginning {
                Offset::beginning()
            } else {
                Offset::end()
            };
            let config = ConsumerConfig::builder()
                .disable_continuous(disable_continuous)
                .build()
                .map_err(failed)?;
            #[allow(deprecated)]
            let mut stream = consumer
                .stream_with_config(offset, config)
                .await
                .map_err(failed)?;
            let mut stdout = std::io::stdout().lock();
            while let Some(record) = stream.next().await {
                let record = record.map_err(failed)?;
                stdout.write_all(record.value()).map_err(failed)?;
                stdout.write_all(b"\n").map_err(failed)?;
                stdout.flush().map_err(failed)?;
            }
            Ok(())
        }
    }
}

/// Fluvio's error text, plus the SPU's numeric error code when there is one.
fn with_code(err: &fluvio::FluvioError) -> CliError {
    use fluvio_protocol::Encoder;
    let code = match err {
        fluvio::FluvioError::Producer(fluvio::ProducerError::SpuErrorCode(code)) => Some(code),
        _ => None,
    };
    match code {
        Some(code) => {
            let mut tag = Vec::new();
            let _ = code.encode(&mut tag, 0);
            let number = tag
                .first_chunk::<2>()
                .map(|t| i16::from_be_bytes(*t))
                .unwrap_or_default();
            CliError::Refused {
                message: err.to_string(),
                code: number,
                name: format!("{code:?}"),
            }
        }
        None => failed(err),
    }
}

/// Every mirror partition, or none if the SC does not say (a Fluvio SC).
async fn mirror_rows(target: &Target) -> Vec<MirrorPartitionRow> {
    crate::operate::report(target).await.unwrap_or_default()
}

/// A topic's mirror partitions' states, `partition:state` each, or "-".
fn topic_mirror_states(rows: &[MirrorPartitionRow], topic: &str) -> String {
    let states: Vec<String> = rows
        .iter()
        .filter(|row| row.topic == topic)
        .map(|row| format!("{}:{}", row.partition, row.state))
        .collect();
    if states.is_empty() {
        "-".into()
    } else {
        states.join(",")
    }
}

/// The pairing table, then the partitions' (or both as one JSON object).
fn print_mirrors(pairing: Vec<Vec<String>>, partitions: &[MirrorPartitionRow], output: Output) {
    if output == Output::Json {
        let pairing: Vec<serde_json::Value> = pairing
            .into_iter()
            .map(|row| {
                let fields = PAIRING_HEADERS
                    .iter()
                    .map(|h| h.to_lowercase().replace(' ', "_"))
                    .zip(row.into_iter().map(serde_json::Value::String));
                serde_json::Value::Object(fields.collect())
            })
            .collect();
        let partitions: Vec<serde_json::Value> =
            partitions.iter().map(crate::operate::row_json).collect();
        println!(
            "{}",
            serde_json::json!({ "mirrors": pairing, "partitions": partitions })
        );
        return;
    }
    print_table(&PAIRING_HEADERS, pairing);
    if !partitions.is_empty() {
        println!();
        crate::operate::print_partitions(partitions, Output::Table);
    }
}

const PAIRING_HEADERS: [&str; 7] = [
    "NAME",
    "ROUTE",
    "SC",
    "SPU",
    "CONNECTION",
    "LAST SEEN",
    "ERRORS",
];

/// A mirror's pairing as Fluvio's `remote list` and `home status` show it.
fn pairing_row(name: String, route: String, status: MirrorStatus) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let seen = status.connection_stat.last_seen;
    let last_seen = if seen == 0 {
        "-".to_string()
    } else {
        format!("{}s ago", now.saturating_sub(seen) / 1000)
    };
    vec![
        name,
        route,
        status.pairing_sc.to_string(),
        status.pairing_spu.to_string(),
        status.connection_status.to_string(),
        last_seen,
        status.pair_errors(),
    ]
}
