//! The home side: a remote's `MirrorConnect` arrived on the public port.
//! The remote must be registered; then the connection carries only its
//! stream: the mirror topics that list it, each with the SPU leading its
//! partition (id, key, public endpoint), sent again whenever they change
//! and every [`HEARTBEAT`] as a sign of life. Unregistering the remote
//! ends the stream and closes the connection.
//!
//! With our own remote SC (client id [`super::CLIENT_ID`]) the stream also
//! carries MirrorStates both ways (`mg_controlplane::operate`): this side's
//! receiving partitions' states as frames of their own correlation id, and
//! the remote's as requests, which the partitions sending to it follow.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluvio_controlplane_metadata::mirror::MirrorPairStatus;
use fluvio_controlplane_metadata::mirroring::{
    MirrorConnect, MirroringRemoteClusterRequest, MirroringSpecWrapper, MirroringStatusResponse,
};
use fluvio_controlplane_metadata::topic::TopicSpec;
use fluvio_protocol::api::ApiMessage;
use fluvio_protocol::link::ErrorCode;
use fluvio_sc_schema::{AdminPublicDecodedRequest, TryEncodableFrom};
use mg_transport::{FrameReader, ShutdownSignal, encode_response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::{MIRRORING_KEY, MirroringAccess, sc_status};
use crate::versions::{PLATFORM_VERSION, SERVED_VERSIONS};
use bytes::BytesMut;
use mg_controlplane::operate::{
    MIRROR_STATES_CORRELATION, MIRROR_STATES_KEY, MirrorStates, TopicMirrorState,
};
use mg_transport::tls::Identity;
use mg_transport::{FrameLimits, RequestHeader, decode_body};
use mg_wire::{ErrorCode as WireCode, write_api_versions};

const API_VERSIONS: u16 = 18;
use crate::cluster::Cluster;

/// How often a live stream's certificate is checked again against the
/// record of issued certificates (`remote export --rotate` rewrites it).
const RECHECK: Duration = Duration::from_secs(1);

/// How often an unchanged topic list is sent again.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Why a mirroring stream ended badly.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The request did not decode as a MirrorConnect.
    #[error("malformed mirroring request: {0}")]
    Malformed(String),
    /// Writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding our own answer failed: a bug.
    #[error("cannot encode: {0}")]
    Encode(#[from] mg_transport::EncodeError),
}

/// Serves a MirrorConnect stream until the remote leaves, is unregistered,
/// or the SC shuts down.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, W>(
    frame: &Bytes,
    frames: &mut FrameReader<R>,
    writer: &mut W,
    cluster: &Arc<Cluster>,
    peer: SocketAddr,
    proven: Option<&Identity>,
    access: &MirroringAccess,
    mut stop: ShutdownSignal,
) -> Result<(), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request = AdminPublicDecodedRequest::decode_from(&mut Cursor::new(frame.as_ref()))
        .map_err(|err| StreamError::Malformed(err.to_string()))?;
    let AdminPublicDecodedRequest::MirroringRequest(message) = request else {
        return Err(StreamError::Malformed("not a mirroring request".into()));
    };
    let (correlation, version) = (
        message.header.correlation_id(),
        message.header.api_version(),
    );
    let connect: MirroringRemoteClusterRequest<MirrorConnect> = message
        .request
        .downcast()
        .map_err(|err| StreamError::Malformed(err.to_string()))?
        .ok_or_else(|| StreamError::Malformed("not a MirrorConnect".into()))?;
    let remote = connect.request.remote_id;
    // The binding: the remote is who its certificate says, or (only with
    // --insecure-mirroring) whoever it claims to be.
    let bound =
        mg_transport::tls::bind(proven, &remote, access.insecure, access.tls_dir.as_deref());
    if let Err(reason) = bound {
        access.metrics.mirror_refused(reason);
        let proven = proven.map(|id| id.common_name.as_str()).unwrap_or("-");
        warn!(%peer, claimed = remote, proven, reason, "refusing mirroring connection");
        return Ok(());
    }
    if !cluster.is_registered_remote(&remote) {
        access.metrics.mirror_refused("unknown remote");
        warn!(%peer, remote, "refusing mirroring connection: the remote is not registered");
        // Only our own remote SC is told why: a Fluvio 0.50 remote applies
        // every response as the full topic list, error or not, and would
        // delete its copies (with the records it holds). To it, as Fluvio's
        // own home does, the refusal is a connection that ends unanswered.
        if message.header.client_id() == super::CLIENT_ID {
            let refusal = MirroringStatusResponse {
                name: remote.clone(),
                error_code: ErrorCode::MirrorNotFound,
                error_message: Some(format!("remote cluster {remote:?} is not registered")),
                topics: Vec::new(),
            };
            writer
                .write_all(&encode_response(correlation, version, &refusal)?)
                .await?;
        }
        return Ok(());
    }
    // Our own remote SC also hears, and tells, the state of the partitions
    // each side receives (MirrorStates); a Fluvio remote is sent nothing new.
    let ours = message.header.client_id() == super::CLIENT_ID;
    info!(%peer, remote, "remote connected for mirroring");
    let _open = OpenStream::new(&access.metrics);
    cluster.mirror_status_from_sc(&remote, sc_status(MirrorPairStatus::Successful, true));
    let mut changes = cluster.subscribe();
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut last: Option<Vec<MirroringSpecWrapper<TopicSpec>>> = None;
    let mut last_states: Option<Vec<TopicMirrorState>> = None;
    let mut due = true;
    let mut recheck = tokio::time::interval(RECHECK);
    let ended = loop {
        if !cluster.is_registered_remote(&remote) {
            break "the remote was unregistered";
        }
        let tls_dir = access.tls_dir.as_deref();
        if mg_transport::tls::bind(proven, &remote, access.insecure, tls_dir).is_err() {
            break "its certificate was rotated out";
        }
        let topics = topics_for(cluster, &remote);
        if due || last.as_ref() != Some(&topics) {
            let response = MirroringStatusResponse::new_ok(&remote, topics.clone());
            writer
                .write_all(&encode_response(correlation, version, &response)?)
                .await?;
            cluster.mirror_status_from_sc(&remote, sc_status(MirrorPairStatus::Successful, true));
            last = Some(topics);
            due = false;
            // Sent again after every topic list: a remote that just created
            // a copy learns its state at once.
            last_states = None;
        }
        if ours {
            let states = cluster.receiving_states(&remote);
            if last_states.as_ref() != Some(&states) {
                let frame = MirrorStates {
                    topics: states.clone(),
                };
                writer
                    .write_all(&encode_response(MIRROR_STATES_CORRELATION, 0, &frame)?)
                    .await?;
                last_states = Some(states);
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break "the SC is stopping" },
            _ = heartbeat.tick() => due = true,
            _ = recheck.tick() => {}
            frame = frames.next() => match frame {
                Ok(Some(frame)) if ours => match follow(cluster, &remote, &frame).await {
                    Ok(()) => {}
                    Err(reason) => {
                        warn!(%peer, remote, %reason, "bad request on a mirroring stream");
                        break "the remote sent a bad request on its mirroring stream";
                    }
                },
                Ok(Some(_)) => break "the remote sent a request on its mirroring stream",
                Ok(None) => break "the remote closed the connection",
                Err(_) => break "the connection failed",
            },
            () = stop.wait() => break "the SC is stopping",
        }
    };
    info!(%peer, remote, reason = ended, "mirroring stream ended");
    if cluster.is_registered_remote(&remote) {
        cluster.mirror_status_from_sc(
            &remote,
            sc_status(MirrorPairStatus::DetailFailure(ended.into()), false),
        );
    }
    Ok(())
}

/// Serves a TLS connection on the public port: only a remote's mirroring
/// stream is served over TLS (ApiVersions, then MirrorConnect, as Fluvio's
/// remotes send them), its certificate already verified.
pub async fn serve_tls<S>(
    stream: S,
    proven: Identity,
    cluster: &Arc<Cluster>,
    peer: SocketAddr,
    access: &MirroringAccess,
    stop: ShutdownSignal,
) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FrameReader::new(read, FrameLimits::default());
    while let Some(frame) = frames
        .next()
        .await
        .map_err(|err| StreamError::Malformed(err.to_string()))?
    {
        let (header, _) =
            RequestHeader::parse(&frame).map_err(|err| StreamError::Malformed(err.to_string()))?;
        match header.api_key {
            API_VERSIONS => {
                let mut out = BytesMut::new();
                write_api_versions(
                    &mut out,
                    header.correlation_id,
                    WireCode::None,
                    &SERVED_VERSIONS,
                    PLATFORM_VERSION,
                );
                write.write_all(&out).await?;
            }
            MIRRORING_KEY => {
                let proven = Some(&proven);
                return serve(
                    &frame,
                    &mut frames,
                    &mut write,
                    cluster,
                    peer,
                    proven,
                    access,
                    stop,
                )
                .await;
            }
            other => {
                access.metrics.mirror_refused("not mirror traffic");
                warn!(%peer, proven = %proven.common_name, api_key = other, "closing TLS connection: only mirroring is served over TLS");
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Counts a stream as open while it lives, however it ends.
struct OpenStream<'a>(&'a crate::metrics::ScMetrics);

impl<'a> OpenStream<'a> {
    fn new(metrics: &'a crate::metrics::ScMetrics) -> Self {
        metrics.streams(1);
        Self(metrics)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.streams(-1);
    }
}

/// Applies a remote's MirrorStates: the partitions here that send to it
/// follow the state of its receiving ones.
async fn follow(cluster: &Arc<Cluster>, remote: &str, frame: &Bytes) -> Result<(), String> {
    let (header, start) = RequestHeader::parse(frame).map_err(|err| err.to_string())?;
    if header.api_key != MIRROR_STATES_KEY {
        return Err(format!("unexpected api key {}", header.api_key));
    }
    let states: MirrorStates =
        decode_body(frame, start, header.api_version, "MirrorStates").map_err(|e| e.to_string())?;
    let (cluster, remote) = (Arc::clone(cluster), remote.to_string());
    // Following writes the metadata: off the async workers.
    tokio::task::spawn_blocking(move || cluster.follow_peer_states(&remote, &states.topics))
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| err.to_string())
}

/// The stream's content for `remote`.
fn topics_for(cluster: &Cluster, remote: &str) -> Vec<MirroringSpecWrapper<TopicSpec>> {
    cluster
        .topics_for_remote(remote)
        .into_iter()
        .map(|(topic, spu)| {
            MirroringSpecWrapper::new(
                topic.name.clone(),
                topic.to_spec(),
                spu.id,
                spu.public_endpoint.clone(),
                spu.id.to_string(),
            )
        })
        .collect()
}
