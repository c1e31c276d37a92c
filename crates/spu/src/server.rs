//! The SPU process: configuration, listeners, and their lifetime.
//!
//! Client connections come in through `mg-transport`'s accept loop, each
//! served by a [`connection`](crate::connection) task with its own clone of
//! the [`Guard`], so judging never contends across connections. `/metrics`
//! and the control-plane client run beside it. Shutdown stops accepting,
//! lets each connection finish the request in hand (within the drain
//! timeout), then syncs every partition written.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mg_guard::Guard;
use mg_roles::RoleTable;
use mg_storage::{LogConfig, Store};
use mg_transport::tls::TlsServer;
use mg_transport::{FrameLimits, ServerLimits, Shutdown};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::changes::{Offsets, Unreported};
use crate::connection::ConnectionContext;
use crate::control::{ControlConfig, ControlHandles, ControlState, MirrorChannels};
use crate::disk::Disk;
use crate::handlers::produce::ProduceHandles;
use crate::metrics::Metrics;
use crate::mirroring::{Controls, MirrorHandles, Pairing};
use crate::storage::PartitionStore;

/// Storage writer threads unless configured otherwise (see [`SpuConfig::storage_lanes`]).
pub const DEFAULT_STORAGE_LANES: usize = 8;

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
    /// How long a frame may take from its first byte to its last.
    pub read_timeout: Duration,
    /// Client connections served at once.
    pub max_connections: usize,
    /// How long connections get to finish at shutdown.
    pub drain_timeout: Duration,
    /// Writer threads appending to the logs; each takes whichever
    /// partition has waited longest, one writer per partition at a time.
    /// They wait on the disk more than they compute, so there are more of
    /// them than cores: a small append then waits for a big one of another
    /// partition only if every writer is busy (default 8).
    pub storage_lanes: usize,
    /// Partition log settings.
    pub log: LogConfig,
    /// Pace big syncs whenever a small commit takes longer than this (see
    /// [`Store::set_flush_target`]); `None` (the default) never does.
    /// Applied by [`Spu::new`] to the store it opens; a store handed to
    /// [`Spu::with_store`] keeps its own setting.
    pub flush_target: Option<Duration>,
    /// The SC's private endpoint, where roles come from (none: standalone).
    pub sc: Option<SocketAddr>,
    /// The private endpoints of standby SCs (SC high availability): the
    /// SPU goes round `sc` and these until one, the active, answers.
    pub sc_standbys: Vec<SocketAddr>,
    /// The home's TLS directory (`ca.pem`, `server.pem`, `server.key`):
    /// mirror traffic over TLS is accepted on the public port, each remote
    /// proving its id with a certificate of that CA.
    pub tls_dir: Option<PathBuf>,
    /// Let mirror traffic in without TLS, the remote's id taken as claimed
    /// (a lab with a Fluvio edge without TLS). Logged as a warning.
    pub insecure_mirroring: bool,
    /// The RegisterSpu version sent to the SC: 2 declares that this SPU
    /// reads mirror controls (epochs, pause), 1 only mirror direction
    /// flags; 0 registers as Fluvio's SPUs (and older
    /// ones) do. Tests set it to play an SPU of the old protocol.
    #[cfg(feature = "test-hooks")]
    pub register_version: i16,
    /// Benchmark builds only: judge produce requests (always, except to
    /// measure the guard's cost).
    #[cfg(feature = "bench-hooks")]
    pub guard_enabled: bool,
}

impl SpuConfig {
    /// Defaults for SPU `spu_id` storing under `data_dir`, on an ephemeral
    /// loopback port.
    pub fn new(spu_id: i32, data_dir: impl Into<PathBuf>) -> Self {
        let frame = FrameLimits::default();
        let server = ServerLimits::default();
        Self {
            spu_id,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            data_dir: data_dir.into(),
            max_frame: frame.max_frame,
            read_timeout: frame.read_timeout,
            max_connections: server.max_connections,
            drain_timeout: server.drain_timeout,
            storage_lanes: DEFAULT_STORAGE_LANES,
            log: LogConfig::default(),
            flush_target: None,
            sc: None,
            sc_standbys: Vec::new(),
            tls_dir: None,
            insecure_mirroring: false,
            #[cfg(feature = "test-hooks")]
            register_version: mg_controlplane::operate::REGISTER_WITH_CONTROL_VERSION,
            #[cfg(feature = "bench-hooks")]
            guard_enabled: true,
        }
    }

    fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_frame: self.max_frame,
            read_timeout: self.read_timeout,
        }
    }

    fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
        }
    }

    fn control(&self, sc: SocketAddr) -> ControlConfig {
        ControlConfig {
            scs: std::iter::once(sc)
                .chain(self.sc_standbys.iter().copied())
                .collect(),
            spu_id: self.spu_id,
            limits: self.frame_limits(),
            #[cfg(feature = "test-hooks")]
            register_version: self.register_version,
            #[cfg(not(feature = "test-hooks"))]
            register_version: mg_controlplane::operate::REGISTER_WITH_CONTROL_VERSION,
        }
    }
}

/// An SPU, ready to start.
#[derive(Debug)]
pub struct Spu {
    config: SpuConfig,
    store: Arc<dyn PartitionStore>,
    roles: Arc<RoleTable>,
    guard: Guard,
}

impl Spu {
    /// An SPU storing in `config.data_dir` with the real partition store.
    pub fn new(config: SpuConfig) -> io::Result<Self> {
        let store = Arc::new(Store::new(&config.data_dir, config.log)?);
        store.set_flush_target(config.flush_target);
        Ok(Self::with_store(config, store))
    }

    /// An SPU over any [`PartitionStore`] (tests wrap the real one in a spy).
    pub fn with_store(config: SpuConfig, store: Arc<dyn PartitionStore>) -> Self {
        let roles = Arc::new(RoleTable::new(config.spu_id));
        let guard = Guard::new(roles.clone());
        Self {
            config,
            store,
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
        let Spu {
            config,
            store,
            roles,
            guard,
        } = self;
        let produce = ProduceHandles {
            disk: Disk::new(store, config.storage_lanes)?,
            offsets: Arc::new(Offsets::default()),
            unreported: Arc::new(Unreported::default()),
            metrics: Arc::new(Metrics::default()),
            #[cfg(feature = "bench-hooks")]
            guard_enabled: config.guard_enabled,
        };
        let mirrors = MirrorChannels {
            directory: Arc::new(watch::channel(Arc::default()).0),
            roles_changed: Arc::new(watch::channel(0).0),
            pairing: Arc::new(Pairing::default()),
            controls: Arc::new(Controls::default()),
        };
        let context = ConnectionContext {
            limits: config.frame_limits(),
            mirror: MirrorHandles {
                roles: roles.clone(),
                disk: produce.disk.clone(),
                offsets: produce.offsets.clone(),
                unreported: produce.unreported.clone(),
                metrics: produce.metrics.clone(),
                directory: mirrors.directory.subscribe(),
                roles_changed: mirrors.roles_changed.subscribe(),
                pairing: mirrors.pairing.clone(),
                controls: mirrors.controls.clone(),
                insecure: config.insecure_mirroring,
                tls_dir: config.tls_dir.clone(),
            },
            tls: match &config.tls_dir {
                Some(dir) => Some(TlsServer::from_dir(dir)?),
                None => None,
            },
            produce,
        };
        if config.insecure_mirroring {
            warn!(
                "--insecure-mirroring: mirror traffic without TLS is accepted, remote ids taken as claimed"
            );
        }
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, signal) = Shutdown::new();
        let mut tasks = Vec::new();
        let metrics_addr = match config.metrics_listen {
            Some(at) => {
                let metrics = TcpListener::bind(at).await?;
                let metrics_addr = metrics.local_addr()?;
                let (counters, stats) = (context.produce.metrics.clone(), guard.stats().clone());
                let disk = context.produce.disk.clone();
                let render: mg_transport::metrics_http::Render =
                    Arc::new(move || counters.render(&stats, disk.sync_pacing()));
                tasks.push(tokio::spawn(mg_transport::metrics_http::serve(
                    metrics,
                    render,
                    signal.clone(),
                )));
                Some(metrics_addr)
            }
            None => None,
        };
        let span = info_span!("spu", id = config.spu_id, %addr);
        info!(parent: &span, metrics = ?metrics_addr, data_dir = %config.data_dir.display(), "SPU listening");
        let (control_tx, control) = watch::channel(ControlState::default());
        if let Some(sc) = config.sc {
            let handles = ControlHandles {
                roles: roles.clone(),
                disk: context.produce.disk.clone(),
                offsets: context.produce.offsets.clone(),
                unreported: context.produce.unreported.clone(),
                metrics: context.produce.metrics.clone(),
                mirrors: mirrors.clone(),
            };
            let client =
                crate::control::run(config.control(sc), handles, control_tx, signal.clone());
            tasks.push(tokio::spawn(client.instrument(info_span!("control", %sc))));
        }
        tasks.push(tokio::spawn(
            crate::mirroring::remote::run(context.mirror.clone(), signal.clone())
                .instrument(info_span!("mirrors", spu = config.spu_id)),
        ));
        let serving = {
            let (context, guard) = (context.clone(), guard.clone());
            mg_transport::serve(
                listener,
                config.server_limits(),
                signal,
                context.produce.metrics.clone(),
                move |socket, peer, stop| {
                    crate::connection::serve(socket, peer, context.clone(), guard.clone(), stop)
                },
            )
        };
        tasks.push(tokio::spawn(serving.instrument(span)));
        Ok(RunningSpu {
            control,
            addr,
            metrics_addr,
            roles,
            guard,
            context,
            mirrors,
            shutdown,
            tasks,
        })
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
    context: ConnectionContext,
    mirrors: MirrorChannels,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSpu {
    /// Applies mirror objects as the SC's UpdateMirror would (standalone
    /// SPUs and tests; under an SC, its pushes do this).
    pub fn apply_mirrors(&self, request: mg_controlplane::UpdateMirrorRequest) {
        self.mirrors
            .directory
            .send_modify(|directory| *directory = Arc::new(directory.applied(request)));
    }

    /// Tells the mirror links that the role table changed (after
    /// [`roles`](Self::roles) was updated directly; the control plane does
    /// this itself).
    pub fn roles_changed(&self) {
        self.mirrors.roles_changed.send_modify(|n| *n += 1);
    }

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
        &self.context.produce.metrics
    }

    /// Stops accepting, lets every connection finish the request in hand
    /// (within the drain timeout), stops the control client, then syncs
    /// every partition written, so that what was acknowledged is on disk.
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(err) = self.context.produce.disk.sync_all().await {
            warn!(%err, "final sync failed");
        }
        info!("SPU stopped");
    }

    /// Serves until the process is interrupted (Ctrl-C or SIGTERM), then
    /// shuts down gracefully.
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
