//! The SPU process: configuration, listeners, and the accept loop.
//!
//! One task accepts client connections and spawns a [`connection`](crate::connection)
//! task for each; another serves `/metrics`. Every connection gets its own
//! clone of the [`Guard`], so judging never contends across connections.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mg_guard::Guard;
use mg_roles::RoleTable;
use mg_storage::{LogConfig, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::control::ControlState;
use crate::metrics::Metrics;
use crate::storage::PartitionStore;

/// How the SPU is set up.
#[derive(Clone, Debug)]
pub struct SpuConfig {
    /// This SPU's id; the SC names partition leaders by it.
    pub spu_id: i32,
    /// Where clients connect (Fluvio's SPU public port).
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where partition logs live.
    pub data_dir: PathBuf,
    /// Frames larger than this close the connection (default: Fluvio's 50 MiB).
    pub max_frame: usize,
    /// Partition log settings.
    pub log: LogConfig,
    /// Judge produce requests (always, except to measure the guard's cost).
    pub guard_enabled: bool,
    /// The SC's private endpoint, where roles come from (none: standalone).
    pub sc: Option<SocketAddr>,
    /// The RegisterSpu version sent to the SC: 1 declares that this SPU
    /// reads mirror direction flags; 0 registers as Fluvio's SPUs (and older
    /// ones) do, which tests use to play an SPU of the old protocol.
    pub register_version: i16,
}

impl SpuConfig {
    /// Defaults for SPU `spu_id` storing under `data_dir`, on an ephemeral
    /// loopback port.
    pub fn new(spu_id: i32, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            spu_id,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            data_dir: data_dir.into(),
            max_frame: mg_wire::DEFAULT_MAX_FRAME,
            log: LogConfig::default(),
            guard_enabled: true,
            sc: None,
            register_version: mg_controlplane::keys::REGISTER_WITH_FLAGS_VERSION,
        }
    }
}

/// State every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SpuConfig,
    pub(crate) store: Arc<dyn PartitionStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// Log ends, for streams waiting on new records.
    pub(crate) offsets: crate::stream::Offsets,
    /// Partitions written since the last status report to the SC.
    pub(crate) dirty: crate::control::Dirty,
}

impl std::fmt::Debug for dyn PartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionStore")
    }
}

/// An SPU, ready to start.
#[derive(Debug)]
pub struct Spu {
    shared: Arc<Shared>,
    roles: Arc<RoleTable>,
    guard: Guard,
}

impl Spu {
    /// An SPU storing in `config.data_dir` with the real partition store.
    pub fn new(config: SpuConfig) -> io::Result<Self> {
        let store = Arc::new(Store::new(&config.data_dir, config.log)?);
        Ok(Self::with_store(config, store))
    }

    /// An SPU over any [`PartitionStore`] (tests wrap the real one in a spy).
    pub fn with_store(config: SpuConfig, store: Arc<dyn PartitionStore>) -> Self {
        let roles = Arc::new(RoleTable::new(config.spu_id));
        let guard = Guard::new(roles.clone());
        Self {
            shared: Arc::new(Shared {
                config,
                store,
                metrics: Arc::new(Metrics::default()),
                offsets: Default::default(),
                dirty: Default::default(),
            }),
            roles,
            guard,
        }
    }

    /// The role table: the control plane applies its updates here.
    pub fn roles(&self) -> &Arc<RoleTable> {
        &self.roles
    }

    /// Binds the listeners and starts serving.
    pub async fn start(self) -> io::Result<RunningSpu> {
        let listener = TcpListener::bind(self.shared.config.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let metrics_addr = match self.shared.config.metrics_listen {
            Some(at) => {
                let metrics = TcpListener::bind(at).await?;
                let metrics_addr = metrics.local_addr()?;
                tasks.push(tokio::spawn(crate::http::serve(
                    metrics,
                    self.shared.metrics.clone(),
                    self.guard.stats().clone(),
                    stopped.clone(),
                )));
                Some(metrics_addr)
            }
            None => None,
        };
        let span = info_span!("spu", id = self.shared.config.spu_id, %addr);
        info!(parent: &span, metrics = ?metrics_addr, data_dir = %self.shared.config.data_dir.display(), "SPU listening");
        let (control_tx, control) = watch::channel(ControlState::default());
        if let Some(sc) = self.shared.config.sc {
            tasks.push(tokio::spawn(
                crate::control::run(
                    sc,
                    self.shared.config.spu_id,
                    self.roles.clone(),
                    self.shared.clone(),
                    control_tx,
                    stopped.clone(),
                )
                .instrument(info_span!("control", %sc)),
            ));
        }
        tasks.push(tokio::spawn(
            accept_loop(listener, self.shared.clone(), self.guard.clone(), stopped)
                .instrument(span),
        ));
        Ok(RunningSpu {
            control,
            addr,
            metrics_addr,
            roles: self.roles,
            guard: self.guard,
            metrics: self.shared.metrics.clone(),
            stop,
            tasks,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    guard: Guard,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let connection = crate::connection::serve(socket, peer, shared.clone(), guard.clone(), stop.clone());
                    tokio::spawn(connection.instrument(info_span!("connection", %peer)));
                }
                // Out of file descriptors and the like: keep serving the others.
                Err(err) => {
                    warn!(%err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

/// A started SPU.
#[derive(Debug)]
pub struct RunningSpu {
    control: watch::Receiver<ControlState>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    roles: Arc<RoleTable>,
    guard: Guard,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSpu {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The SPU's standing with the SC, to await changes of.
    pub fn control(&self) -> watch::Receiver<ControlState> {
        self.control.clone()
    }

    /// The role table the control plane updates.
    pub fn roles(&self) -> &Arc<RoleTable> {
        &self.roles
    }

    /// The guard's counters.
    pub fn guard_stats(&self) -> &mg_guard::GuardStats {
        self.guard.stats()
    }

    /// The SPU's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Serves until the process is interrupted (Ctrl-C or SIGTERM).
    pub async fn run_until_signal(self) -> io::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}
