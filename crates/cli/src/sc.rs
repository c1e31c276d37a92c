//! `mirror-guard sc`: run the SC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mg_sc::persist::{Persistence, StoreConfig};
use mg_sc::{Cluster, serve_private, serve_public};

/// Arguments of `mirror-guard sc`.
#[derive(Parser, Debug)]
pub struct ScArgs {
    /// Directory for the metadata.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address clients connect to (Fluvio's SC public port is 9003).
    #[arg(long, default_value = "127.0.0.1:9003")]
    public: SocketAddr,
    /// Address SPUs connect to (Fluvio's SC private port is 9004).
    #[arg(long, default_value = "127.0.0.1:9004")]
    private: SocketAddr,
    /// Make sure an SPU is known: `ID=PUBLIC_HOST:PORT`. Repeatable.
    #[arg(long = "spu", value_name = "ID=HOST:PORT")]
    spus: Vec<String>,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// The home's TLS directory (`ca.pem`, `server.pem`, `server.key`):
    /// remotes connect over TLS with a certificate of that CA.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Let plaintext MirrorConnect in, remote ids taken as claimed (a lab
    /// with a Fluvio edge without TLS); logged as a warning.
    #[arg(long)]
    insecure_mirroring: bool,
    /// Port for the SC's Prometheus `/metrics` on 127.0.0.1 (none if absent).
    #[arg(long)]
    metrics_port: Option<u16>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where the SC keeps its metadata (`sc` and `cluster start`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// `etcd://HOST:PORT[,HOST:PORT…]` to keep the metadata on etcd v3;
    /// files under --data-dir when absent.
    #[arg(long, value_name = "etcd://HOST:PORT[,…]")]
    pub store: Option<String>,
    /// The key prefix of this cluster on etcd.
    #[arg(long, default_value = "/mirror-guard/default", requires = "store")]
    pub etcd_prefix: String,
}

impl StoreArgs {
    /// The store these arguments name.
    pub fn config(&self) -> Result<mg_sc::persist::StoreConfig, String> {
        match &self.store {
            None => Ok(mg_sc::persist::StoreConfig::Files),
            Some(url) => mg_sc::etcd::EtcdConfig::parse(url, &self.etcd_prefix)
                .map(mg_sc::persist::StoreConfig::Etcd),
        }
    }
}

/// The store to run on: files at once; on etcd, once this SC is elected
/// (with the receiver that says when it lost the leadership), or `None` if
/// it was told to stop while standing by.
async fn elected(
    store: &StoreConfig,
    data_dir: &std::path::Path,
    candidate: String,
) -> std::io::Result<Option<(Persistence, Option<tokio::sync::watch::Receiver<bool>>)>> {
    let etcd = match store {
        StoreConfig::Files => return Ok(Some((Persistence::open(store, data_dir)?, None))),
        StoreConfig::Etcd(etcd) => etcd.clone(),
    };
    let campaign = tokio::task::spawn_blocking(move || {
        let etcd = mg_sc::etcd::EtcdStore::open(etcd)?;
        let lost = etcd.campaign(&candidate)?;
        Ok::<_, std::io::Error>((etcd, lost))
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        elected = campaign => {
            let (etcd, lost) = elected.map_err(std::io::Error::other)??;
            Ok(Some((Persistence::Etcd(Box::new(etcd)), Some(lost))))
        }
        _ = tokio::signal::ctrl_c() => Ok(None),
        _ = term.recv() => Ok(None),
    }
}

pub fn run(args: ScArgs) -> ExitCode {
    if let Err(err) = crate::init_logging(&args.log_level) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let mut spus = Vec::new();
    for spec in &args.spus {
        let Some((id, public)) = spec.split_once('=') else {
            eprintln!("error: --spu {spec:?}: expected ID=HOST:PORT");
            return ExitCode::from(2);
        };
        let Ok(id) = id.parse::<i32>() else {
            eprintln!("error: --spu {spec:?}: the id must be a number");
            return ExitCode::from(2);
        };
        spus.push((id, public.to_string()));
    }
    let store = match args.store.config() {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: --store: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // On etcd, SCs sharing a prefix elect one: the others stand by here,
    // serving nothing, until the leader's lease is gone.
    let candidate = format!("{} (pid {})", args.public, std::process::id());
    let (persistence, lost) = match runtime.block_on(elected(&store, &args.data_dir, candidate)) {
        Ok(Some(elected)) => elected,
        Ok(None) => {
            // Stopped while standing by: the campaign's thread still waits.
            runtime.shutdown_background();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match Cluster::open_on(&args.data_dir, persistence) {
        Ok(cluster) => Arc::new(cluster),
        Err(err) => {
            eprintln!("error: cannot load the metadata: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (id, public) in spus {
        if let Err(err) = cluster.register_spu(id, &public, &args.private.to_string()) {
            eprintln!("error: registering SPU {id}: {err}");
            return ExitCode::FAILURE;
        }
    }
    let access = mg_sc::mirroring::MirroringAccess {
        tls: match args
            .tls_dir
            .as_deref()
            .map(mg_transport::tls::TlsServer::from_dir)
        {
            None => None,
            Some(Ok(tls)) => Some(tls),
            Some(Err(err)) => {
                eprintln!("error: --tls-dir: {err}");
                return ExitCode::FAILURE;
            }
        },
        insecure: args.insecure_mirroring,
        tls_dir: args.tls_dir.clone(),
        metrics: Default::default(),
    };
    let counters = access.metrics.clone();
    let cluster_for_resign = cluster.clone();
    let result: std::io::Result<()> = runtime.block_on(async move {
        let private = serve_private(args.private, cluster.clone()).await?;
        let public = serve_public(args.public, cluster.clone(), access).await?;
        // On a remote cluster: the MirrorConnect stream to its home.
        let (stop_mirroring, stop) = mg_transport::Shutdown::new();
        if let Some(port) = args.metrics_port {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let render: mg_transport::metrics_http::Render = Arc::new(move || counters.render());
            tokio::spawn(mg_transport::metrics_http::serve(
                listener,
                render,
                stop.clone(),
            ));
        }
        let mirroring = tokio::spawn(mg_sc::mirroring::remote::run(cluster, stop));
        println!(
            "sc listening on {} (private {})",
            public.addr(),
            private.addr()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut lost = lost;
        let leadership_lost = async {
            match &mut lost {
                Some(lost) => {
                    let _ = lost.wait_for(|lost| *lost).await;
                }
                None => std::future::pending().await,
            }
        };
        let mut fenced = false;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = leadership_lost => fenced = true,
        }
        stop_mirroring.trigger();
        let _ = mirroring.await;
        public.shutdown().await;
        private.shutdown().await;
        if !fenced {
            // A graceful stop hands the leadership on at once.
            let resigned = tokio::task::spawn_blocking(move || cluster_for_resign.resign()).await;
            if let Ok(Err(err)) = resigned {
                eprintln!("warning: could not resign the leadership: {err}");
            }
        }
        if fenced {
            // Its writes are refused already (each is conditioned on the
            // lease); it stops serving, for a standby to take over.
            return Err(std::io::Error::other(
                "lost the leadership (the etcd lease is gone, or a commit's outcome could not be learned: see the log): stopped",
            ));
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
