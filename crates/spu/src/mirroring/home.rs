//! The home side of a mirror connection: a StartMirror arrived on the
//! public port, over TLS (`serve_tls`) or, only with
//! `--insecure-mirroring`, in plaintext. The remote must be who its
//! certificate says (`mg_transport::tls::bind`), registered here, and one
//! of the partitions this SPU leads must be that remote's partition of a
//! mirror topic for exactly the replica it names; anything else closes the
//! connection with a logged reason (peer, claimed and proven ids), counted
//! in `/metrics`. From then on the connection speaks only the mirror
//! protocol: a Produce frame sent on it is not a produce. A live link ends
//! when its standing does (unregistered, rotated out, role changed).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use fluvio_controlplane_metadata::mirror::MirrorPairStatus;
use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use fluvio_spu_schema::server::mirror::StartMirrorRequest;
use mg_transport::tls::Identity;
use mg_transport::{FrameLimits, FrameReader, RequestHeader, ShutdownSignal, decode_body};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::link::{self, Link, finish};
use super::protocol::{Keys, START_MIRROR};
use super::{MirrorHandles, changed};
use crate::handlers::{self, api::API_VERSIONS};

/// The partition a remote's StartMirror is admitted to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Admitted {
    topic: String,
    partition: u32,
    /// Home-to-remote: this side sends.
    source: bool,
    /// The partition's mirror epoch when admitted.
    epoch: u32,
}

/// Serves a mirror connection from its StartMirror frame on, until the
/// remote leaves, misbehaves, or loses its standing here.
pub(crate) async fn serve<R, W>(
    frame: &Bytes,
    frames: &mut FrameReader<R>,
    writer: &mut W,
    peer: SocketAddr,
    proven: Option<&Identity>,
    handles: &MirrorHandles,
    shutdown: ShutdownSignal,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request: Result<StartMirrorRequest, String> = RequestHeader::parse(frame)
        .map_err(|err| err.to_string())
        .and_then(|(header, start)| {
            decode_body(frame, start, header.api_version, "StartMirror")
                .map_err(|err| err.to_string())
        });
    let request = match request {
        Ok(request) => request,
        Err(err) => {
            handles.metrics.malformed();
            handles.metrics.mirror_refused("malformed");
            warn!(%peer, reason = %err, "closing connection");
            return;
        }
    };
    let remote = request.remote_cluster_id;
    let replica = request.remote_replica;
    // The binding: the remote is who its certificate says, or (only with
    // --insecure-mirroring) whoever it claims to be.
    let bound = mg_transport::tls::bind(
        proven,
        &remote,
        handles.insecure,
        handles.tls_dir.as_deref(),
    );
    if let Err(reason) = bound {
        handles.metrics.mirror_refused(reason);
        let proven = proven.map(|id| id.common_name.as_str()).unwrap_or("-");
        warn!(%peer, claimed = remote, proven, replica, reason, "refusing mirror connection");
        return;
    }
    let admitted = match admit(handles, &remote, &replica) {
        Ok(admitted) => admitted,
        Err(reason) => {
            handles.metrics.mirror_refused(reason);
            warn!(%peer, remote, replica, reason, "refusing mirror connection");
            return;
        }
    };
    let link = Link {
        remote: remote.clone(),
        mirror: remote.clone(),
        topic: admitted.topic.clone(),
        partition: admitted.partition,
        peer: peer.to_string(),
        epoch: admitted.epoch,
    };
    info!(%peer, remote, topic = %link.topic, partition = link.partition, source = admitted.source, epoch = admitted.epoch, "mirror link admitted");
    handles
        .pairing
        .set(&link.mirror, MirrorPairStatus::Successful);
    let stop = standing_lost(
        handles.clone(),
        Standing {
            remote: remote.clone(),
            replica,
            admitted: admitted.clone(),
            proven: proven.cloned(),
        },
        shutdown,
    );
    let (mine, theirs) = (Keys::FROM_HOME, Keys::FROM_REMOTE);
    // Home-to-remote (source): this side sends; to home, it receives.
    let ended = link::run(
        admitted.source,
        &link,
        frames,
        writer,
        mine,
        theirs,
        handles,
        stop,
    )
    .await;
    finish(&link, handles, ended);
}

/// Serves a TLS connection on the public port: only mirror traffic is
/// served over TLS (ApiVersions, then StartMirror, as Fluvio's remotes
/// send them); the peer's certificate has already been verified, and its
/// common name is what StartMirror must claim.
pub(crate) async fn serve_tls<S>(
    stream: S,
    proven: Identity,
    peer: SocketAddr,
    limits: FrameLimits,
    handles: &MirrorHandles,
    shutdown: ShutdownSignal,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FrameReader::new(read, limits);
    let mut out = BytesMut::new();
    loop {
        let Ok(Some(frame)) = frames.next().await else {
            return;
        };
        let Ok((header, start)) = RequestHeader::parse(&frame) else {
            handles.metrics.malformed();
            warn!(%peer, proven = %proven.common_name, "closing TLS connection: malformed header");
            return;
        };
        match header.api_key {
            API_VERSIONS => {
                out.clear();
                if handlers::api_versions(&frame, &header, start, &mut out).is_err()
                    || write.write_all(&out).await.is_err()
                {
                    return;
                }
            }
            START_MIRROR => {
                let stop = shutdown.clone();
                serve(
                    &frame,
                    &mut frames,
                    &mut write,
                    peer,
                    Some(&proven),
                    handles,
                    stop,
                )
                .await;
                // A link this side ends (paused, fenced, unregistered) is
                // closed cleanly: TLS close_notify, then the socket.
                let _ = write.shutdown().await;
                return;
            }
            other => {
                handles.metrics.mirror_refused("not mirror traffic");
                warn!(%peer, proven = %proven.common_name, api_key = other, "closing TLS connection: only mirror traffic is served over TLS");
                return;
            }
        }
    }
}

/// The partition `remote` may mirror `replica` with, or why not.
fn admit(handles: &MirrorHandles, remote: &str, replica: &str) -> Result<Admitted, &'static str> {
    if !handles.directory.borrow().is_registered(remote) {
        return Err("unknown remote");
    }
    let snapshot = handles.roles.snapshot();
    for topic in snapshot.topics() {
        for role in topic.partitions() {
            if let Some(PartitionMirrorConfig::Home(home)) = role.mirror()
                && home.remote_cluster == remote
                && home.remote_replica == replica
            {
                let control = handles.controls.get(topic.name(), role.partition());
                if control.control.paused {
                    return Err("paused");
                }
                return Ok(Admitted {
                    topic: topic.name().to_string(),
                    partition: role.partition(),
                    source: home.source,
                    epoch: control.control.epoch,
                });
            }
        }
    }
    if handles.controls.ended_for(remote, replica).is_some() {
        // Promoted or failed over here: a sender that comes back with an
        // old view is turned away, and counted as such.
        return Err("fenced");
    }
    Err("no partition here mirrors that remote replica")
}

/// What a link was admitted on.
struct Standing {
    remote: String,
    replica: String,
    admitted: Admitted,
    /// The certificate it came with (none: plaintext).
    proven: Option<Identity>,
}

/// How often a live link's certificate is checked again against the
/// record of issued certificates (`remote export --rotate` rewrites it).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when the link loses its standing: the remote is unregistered,
/// its certificate was rotated out, the partition is no longer this
/// remote's (or changed direction, or moved away, or its mirror epoch
/// moved on: paused, promoted, failed over), or the SPU shuts down.
async fn standing_lost(
    handles: MirrorHandles,
    standing: Standing,
    mut shutdown: ShutdownSignal,
) -> String {
    let mut directory = handles.directory.clone();
    let mut roles = handles.roles_changed.clone();
    let mut recheck = tokio::time::interval(RECHECK);
    let Standing {
        remote,
        replica,
        admitted,
        proven,
    } = standing;
    loop {
        match admit(&handles, &remote, &replica) {
            Ok(now) if now == admitted => {}
            Ok(_) => return "the partition's mirror role changed".into(),
            Err(reason) => return reason.into(),
        }
        let tls_dir = handles.tls_dir.as_deref();
        if let Err(reason) =
            mg_transport::tls::bind(proven.as_ref(), &remote, handles.insecure, tls_dir)
        {
            return reason.into();
        }
        tokio::select! {
            () = shutdown.wait() => return "shutting down".into(),
            () = changed(&mut directory) => {}
            () = changed(&mut roles) => {}
            _ = recheck.tick() => {}
        }
    }
}
