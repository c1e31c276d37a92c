//! The SC's private port: SPUs register here and receive their roles.
//!
//! Per SPU connection:
//!
//! ```text
//! <- RegisterSpu        -> RegisterSpuResponse (unknown SPU: refused, closed)
//! -> UpdateSpu (all), UpdateReplica (the partitions this SPU leads; v17,
//!    v18 or v19 by the SPU's registration version), UpdateMirror (all)
//! -> UpdateReplica (changes of its partitions since the session's epoch),
//!    on every change that has any
//! <- UpdateLrs / UpdatePartitionStat / UpdateMirrorStat every 400 ms
//! ```
//!
//! A session that hears nothing from its SPU for [`HEALTH_TIMEOUT`] is
//! closed, as Fluvio's SC does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use fluvio_protocol::link::ErrorCode;
use mg_controlplane::keys::{
    CORRELATION_ID, REGISTER_WITH_FLAGS_VERSION, UPDATE_REPLICA_VERSION,
    UPDATE_REPLICA_WITHOUT_FLAGS,
};
use mg_controlplane::operate::{REGISTER_WITH_CONTROL_VERSION, UPDATE_REPLICA_CONTROL_VERSION};
use mg_controlplane::{
    RegisterSpuRequest, RegisterSpuResponse, ReplicaRemovedRequest, ScKey, SpuKey,
    UpdateLrsRequest, UpdateMirrorRequest, UpdateMirrorStatRequest, UpdateSpuRequest,
};
use mg_controlplane::{Replica, UpdateReplicaRequest};
use mg_transport::{
    BodyError, EncodeError, FrameError, FrameLimits, FrameReader, RequestHeader, RunningServer,
    ServerLimits, ShutdownSignal, decode_body, encode_request, encode_response,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, ReplicaCatchUp};

/// Silence from an SPU after which its session is closed.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a new connection may take to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Control frames are small; one stalled half-sent for 30 s ends the session.
const FRAME_LIMITS: FrameLimits = FrameLimits {
    max_frame: 16 << 20,
    read_timeout: Duration::from_secs(30),
};

/// A running private server: [`addr`](RunningServer::addr) is where SPUs connect,
/// [`shutdown`](RunningServer::shutdown) stops it after the requests in hand.
pub type RunningPrivate = RunningServer;

/// Serves the private port on `listen`.
pub async fn serve_private(
    listen: SocketAddr,
    cluster: Arc<Cluster>,
) -> std::io::Result<RunningPrivate> {
    mg_transport::start(
        "sc private",
        listen,
        ServerLimits::default(),
        (),
        move |socket, _peer, stop| serve_spu(socket, cluster.clone(), stop),
    )
    .await
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("header: {0}")]
    Header(#[from] mg_wire::WireError),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("cannot encode a push: {0}")]
    Encode(#[from] EncodeError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("no registration within {0:?}")]
    NoRegistration(Duration),
    #[error("unknown SPU {0}")]
    UnknownSpu(i32),
    #[error("no word from the SPU for {0:?}")]
    Silent(Duration),
}

type Frames = FrameReader<tokio::net::tcp::OwnedReadHalf>;

async fn serve_spu(socket: TcpStream, cluster: Arc<Cluster>, mut stop: ShutdownSignal) {
    let (read, mut write) = socket.into_split();
    let mut frames = FrameReader::new(read, FRAME_LIMITS);
    let result = tokio::select! {
        result = session(&mut frames, &mut write, &cluster) => result,
        () = stop.wait() => Ok(()),
    };
    if let Err(err) = result {
        warn!(%err, "SPU session closed");
    }
}

async fn session(
    frames: &mut Frames,
    write: &mut OwnedWriteHalf,
    cluster: &Arc<Cluster>,
) -> Result<(), SessionError> {
    let first = tokio::time::timeout(REGISTER_TIMEOUT, frames.next())
        .await
        .map_err(|_| SessionError::NoRegistration(REGISTER_TIMEOUT))??;
    let Some(first) = first else { return Ok(()) };
    let (header, body) = RequestHeader::parse(&first)?;
    if header.api_key != ScKey::RegisterSpu.code() {
        return Err(SessionError::Protocol(format!(
            "expected RegisterSpu, got key {}",
            header.api_key
        )));
    }
    let request: RegisterSpuRequest = decode_body(&first, body, header.api_version, "RegisterSpu")?;
    let spu = request.spu;
    if !cluster.has_spu(spu) {
        let refusal = RegisterSpuResponse {
            error_code: ErrorCode::SpuRegisterationFailed,
            error_message: Some(format!("SPU {spu} is not registered with this SC")),
        };
        write
            .write_all(&encode_response(
                header.correlation_id,
                header.api_version,
                &refusal,
            )?)
            .await?;
        return Err(SessionError::UnknownSpu(spu));
    }
    write
        .write_all(&encode_response(
            header.correlation_id,
            header.api_version,
            &RegisterSpuResponse::default(),
        )?)
        .await?;
    // Version negotiation: only an SPU that registered at version 1 or later
    // said it reads the mirror direction flags; at 2 or later, the mirror
    // controls (epochs and pause: mirror-guard's own).
    let dialect = if header.api_version >= REGISTER_WITH_CONTROL_VERSION {
        Dialect::Controls
    } else if header.api_version >= REGISTER_WITH_FLAGS_VERSION {
        Dialect::Flags
    } else {
        Dialect::NoFlags
    };
    info!(spu, ?dialect, "SPU registered");
    let _online = OnlineSession::start(cluster, spu);
    push_loop(spu, dialect, frames, write, cluster).await
}

/// An SPU's session counted as online for as long as this lives: it ends
/// however the session does, including when the SC drops the session's
/// task at shutdown.
struct OnlineSession<'c> {
    cluster: &'c Cluster,
    spu: i32,
}

impl<'c> OnlineSession<'c> {
    fn start(cluster: &'c Cluster, spu: i32) -> Self {
        cluster.set_online(spu, true);
        Self { cluster, spu }
    }
}

impl Drop for OnlineSession<'_> {
    fn drop(&mut self) {
        self.cluster.set_online(self.spu, false);
    }
}

/// What an SPU reads of the replica pushes, by its registration version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    /// Fluvio's SPUs (and old ones): UpdateReplica below v18.
    NoFlags,
    /// v18: the mirror direction flags.
    Flags,
    /// v19: the flags and the mirror controls (mirror-guard's SPUs).
    Controls,
}

async fn push_loop(
    spu: i32,
    dialect: Dialect,
    frames: &mut Frames,
    write: &mut OwnedWriteHalf,
    cluster: &Arc<Cluster>,
) -> Result<(), SessionError> {
    let mut changes = cluster.subscribe();
    let mut replica_epoch = None;
    let mut spu_epoch = None;
    let mut mirror_epoch = None;
    let mut silent_until = tokio::time::Instant::now() + HEALTH_TIMEOUT;
    loop {
        // Catch up first (the first pass is the session's full sync).
        let (spus_now, mirrors_now) = cluster.push_epochs();
        if spu_epoch != Some(spus_now) {
            let (epoch, spus) = cluster.spus();
            let request = UpdateSpuRequest::sync(epoch, spus.iter().map(|s| s.to_spec()).collect());
            send(write, SpuKey::UpdateSpu, &request).await?;
            spu_epoch = Some(epoch);
        }
        match cluster.replicas_since(spu, replica_epoch) {
            ReplicaCatchUp::Send { request, epoch } => {
                debug!(
                    spu,
                    epoch,
                    all = request.all.len(),
                    changes = request.changes.len(),
                    "pushing replicas"
                );
                let (version, request) = match dialect {
                    Dialect::Controls => (UPDATE_REPLICA_CONTROL_VERSION, request),
                    Dialect::Flags => (UPDATE_REPLICA_VERSION, without_controls(request)),
                    Dialect::NoFlags => (
                        UPDATE_REPLICA_WITHOUT_FLAGS,
                        without_flags(without_controls(request)),
                    ),
                };
                let frame = encode_request(
                    SpuKey::UpdateReplica.code(),
                    version,
                    CORRELATION_ID,
                    "sc",
                    &request,
                )?;
                write.write_all(&frame).await?;
                replica_epoch = Some(epoch);
            }
            // Changes of other SPUs' partitions only.
            ReplicaCatchUp::Skip { epoch } => replica_epoch = Some(epoch),
            ReplicaCatchUp::Nothing => {}
        }
        if mirror_epoch != Some(mirrors_now) {
            let (epoch, mirrors) = cluster.mirror_pushes();
            let request = UpdateMirrorRequest::sync(epoch, mirrors);
            send(write, SpuKey::UpdateMirror, &request).await?;
            mirror_epoch = Some(epoch);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            frame = frames.next() => {
                match frame? {
                    None => {
                        info!(spu, "SPU disconnected");
                        return Ok(());
                    }
                    Some(frame) => {
                        status(&frame, spu, cluster).await?;
                        silent_until = tokio::time::Instant::now() + HEALTH_TIMEOUT;
                    }
                }
            }
            // Only the SPU's own messages keep the session alive.
            _ = tokio::time::sleep_until(silent_until) => return Err(SessionError::Silent(HEALTH_TIMEOUT)),
        }
    }
}

/// Roles for an SPU that cannot read the direction flags. Encoded below v18,
/// a remote target would arrive as a plain, writable remote partition: such
/// a partition goes out with no leader, so that SPU refuses produce to it as
/// not-leader. A home source arrives as a home partition, which refuses
/// produce anyway: safe as it is.
fn without_flags(mut request: UpdateReplicaRequest) -> UpdateReplicaRequest {
    fn withhold(replica: &mut Replica) {
        if matches!(&replica.mirror, Some(PartitionMirrorConfig::Remote(remote)) if remote.target) {
            replica.leader = -1;
            replica.replicas.clear();
        }
    }
    request.all.iter_mut().for_each(withhold);
    request
        .changes
        .iter_mut()
        .for_each(|change| withhold(&mut change.content));
    request
}

/// Roles for an SPU that reads no mirror controls: a partition whose
/// mirroring ended goes out as an ordinary one (no role), which is what it
/// is now. Such an SPU cannot be paused, nor fenced at an epoch.
fn without_controls(mut request: UpdateReplicaRequest) -> UpdateReplicaRequest {
    fn strip(replica: &mut Replica) {
        if replica.control.ended {
            replica.mirror = None;
        }
    }
    request.all.iter_mut().for_each(strip);
    request
        .changes
        .iter_mut()
        .for_each(|change| strip(&mut change.content));
    request
}

async fn send<T: fluvio_protocol::Encoder>(
    write: &mut OwnedWriteHalf,
    key: SpuKey,
    body: &T,
) -> Result<(), SessionError> {
    let version = key.default_version();
    write
        .write_all(&encode_request(
            key.code(),
            version,
            CORRELATION_ID,
            "sc",
            body,
        )?)
        .await?;
    Ok(())
}

/// Takes one status message from the SPU.
async fn status(frame: &Bytes, spu: i32, cluster: &Arc<Cluster>) -> Result<(), SessionError> {
    let (header, body) = RequestHeader::parse(frame)?;
    match ScKey::from_code(header.api_key) {
        Some(ScKey::UpdateLrs) => {
            let lrs: UpdateLrsRequest = decode_body(frame, body, header.api_version, "UpdateLrs")?;
            for replica in lrs.replicas {
                cluster.record_offsets(
                    &replica.id.topic,
                    replica.id.partition,
                    replica.leader.hw,
                    replica.leader.leo,
                    replica.size,
                );
                if let Some(link) = replica.mirror {
                    cluster.record_link(spu, &replica.id.topic, replica.id.partition, link);
                }
            }
            Ok(())
        }
        Some(ScKey::ReplicaRemoved) => {
            let removed: ReplicaRemovedRequest =
                decode_body(frame, body, header.api_version, "ReplicaRemoved")?;
            if removed.confirm {
                // Forgetting the partition writes the metadata: off the workers.
                let cluster = Arc::clone(cluster);
                let id = removed.id;
                let forgotten = tokio::task::spawn_blocking(move || {
                    cluster.replica_removed(spu, &id.topic, id.partition)
                })
                .await
                .map_err(|err| SessionError::Protocol(format!("replica removal failed: {err}")))?;
                if let Err(err) = forgotten {
                    warn!(spu, %err, "could not forget a removed replica");
                }
            }
            Ok(())
        }
        Some(ScKey::UpdateMirrorStat) => {
            let stats: UpdateMirrorStatRequest =
                decode_body(frame, body, header.api_version, "UpdateMirrorStat")?;
            for stat in stats.stats {
                cluster.mirror_status_from_spu(&stat.mirror_id, stat.status);
            }
            Ok(())
        }
        Some(ScKey::UpdatePartitionStat) => Ok(()),
        Some(ScKey::RegisterSpu) => Err(SessionError::Protocol("registered twice".into())),
        None => Err(SessionError::Protocol(format!(
            "unknown key {}",
            header.api_key
        ))),
    }
}
