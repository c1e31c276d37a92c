//! The remote side: while this cluster has a Home mirror object, keep a
//! `MirrorConnect` stream open to the home SC, redialed with backoff, and
//! make the local copies of that home's topics match every response: one
//! partition each, `ReplicaSpec::Mirror(Remote{home_cluster, home_spus,
//! target})`. Only that home's copies are created, updated or deleted;
//! a copy whose mirroring ended (promoted or failed over here, or ended by
//! the home) is this cluster's own topic and is left alone.
//!
//! A mirror-guard home (it lists MirrorStates in ApiVersions) and this side
//! also tell each other the state of the partitions each receives: the
//! copies this side sends follow the home's (paused, ended).

use std::sync::Arc;
use std::time::Duration;

use fluvio_controlplane_metadata::mirror::MirrorPairStatus;
use fluvio_controlplane_metadata::mirroring::{
    MirrorConnect, MirroringRemoteClusterRequest, MirroringStatusResponse,
};
use fluvio_controlplane_metadata::topic::{MirrorConfig, ReplicaSpec};
use fluvio_protocol::link::versions::{ApiVersionsRequest, ApiVersionsResponse};
use fluvio_sc_schema::TryEncodableFrom;
use fluvio_sc_schema::mirroring::ObjectMirroringRequest;
use mg_transport::tls::TlsClient;
use mg_transport::{
    Backoff, BodyError, EncodeError, FrameError, FrameLimits, FrameReader, ShutdownSignal,
    decode_body, dial_endpoint, encode_request,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{CLIENT_ID, MIRRORING_KEY, sc_status};
use crate::cluster::{Cluster, HomeLink, RemoteCopy};
use crate::error::ApiError;
use crate::model::HomeSpu;
use mg_controlplane::operate::{
    MIRROR_STATES_CORRELATION, MIRROR_STATES_KEY, MirrorStates, TopicMirrorState,
};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream that lasted this long was working: the next failure starts the
/// backoff again from its shortest delay.
const STEADY: Duration = Duration::from_secs(5);
const API_VERSIONS: u16 = 18;
/// ApiVersions as Fluvio's clients send it.
const API_VERSIONS_VERSION: i16 = 2;
/// The newest mirroring version this SC speaks.
const MIRRORING_VERSION: i16 = 19;

/// Why a stream to the home ended.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Connecting or talking failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be read.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// An answer did not decode.
    #[error("{0}")]
    Body(#[from] BodyError),
    /// Our own request could not be encoded: a bug.
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The Home object says TLS, and its material is gone from the secrets.
    #[error("the home's TLS material is missing from the SC's secrets")]
    NoTlsMaterial,
    /// The home does not serve mirroring at a version we speak.
    #[error("the home does not serve mirroring (admin key 1005)")]
    Unsupported,
    /// The home refused this remote.
    #[error("the home refused: {0}")]
    Refused(String),
    /// The home closed the stream.
    #[error("the home closed the connection")]
    Closed,
    /// Applying the home's topics failed.
    #[error("applying the home's topics: {0}")]
    Apply(#[from] ApiError),
}

/// Runs until shutdown.
pub async fn run(cluster: Arc<Cluster>, mut stop: ShutdownSignal) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut changes = cluster.subscribe();
    loop {
        let Some(home) = cluster.home() else {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = stop.wait() => return,
            }
            continue;
        };
        let began = tokio::time::Instant::now();
        let ended = tokio::select! {
            ended = stream(&cluster, &home, &mut changes) => ended,
            () = stop.wait() => return,
        };
        match ended {
            Ok(()) => continue,
            Err(err) => {
                warn!(home = %home.id, endpoint = %home.public_endpoint, %err, "mirroring stream to the home ended");
                cluster.mirror_status_from_sc(
                    &home.id,
                    sc_status(MirrorPairStatus::DetailFailure(err.to_string()), false),
                );
            }
        }
        if began.elapsed() >= STEADY {
            backoff.reset();
        }
        if !backoff.wait(&mut stop).await {
            return;
        }
    }
}

/// One stream to the home; `Ok` when the Home object changed (the caller
/// starts again with the new one).
async fn stream(
    cluster: &Arc<Cluster>,
    home: &HomeLink,
    changes: &mut watch::Receiver<u64>,
) -> Result<(), RemoteError> {
    if !home.tls {
        let socket = dial_endpoint(&home.public_endpoint).await?;
        let (read, write) = tokio::io::split(socket);
        return connect_over(cluster, home, changes, read, write).await;
    }
    let tls = cluster
        .home_tls(&home.id)?
        .ok_or(RemoteError::NoTlsMaterial)?;
    let client = TlsClient::from_pem(
        tls.ca_cert.as_bytes(),
        tls.client_cert.as_bytes(),
        tls.client_key.as_bytes(),
    )?;
    // As Fluvio's remotes do: the home SC is named by the TLS domain.
    let stream = client.connect(&home.public_endpoint, &tls.domain).await?;
    let (read, write) = tokio::io::split(stream);
    connect_over(cluster, home, changes, read, write).await
}

/// The stream over an established connection.
async fn connect_over<R, W>(
    cluster: &Arc<Cluster>,
    home: &HomeLink,
    changes: &mut watch::Receiver<u64>,
    read: R,
    mut write: W,
) -> Result<(), RemoteError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameReader::new(read, FrameLimits::default());
    let hello = ApiVersionsRequest {
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    write
        .write_all(&encode_request(
            API_VERSIONS,
            API_VERSIONS_VERSION,
            0,
            CLIENT_ID,
            &hello,
        )?)
        .await?;
    let answer = frames.next().await?.ok_or(RemoteError::Closed)?;
    let versions: ApiVersionsResponse =
        decode_body(&answer, 4, API_VERSIONS_VERSION, "ApiVersions response")?;
    let version = versions
        .api_keys
        .iter()
        .find(|key| key.api_key == MIRRORING_KEY as i16)
        .filter(|key| key.min_version <= MIRRORING_VERSION)
        .map(|key| key.max_version.min(MIRRORING_VERSION))
        .ok_or(RemoteError::Unsupported)?;
    // A mirror-guard home also speaks MirrorStates on the stream.
    let states_spoken = versions
        .api_keys
        .iter()
        .any(|key| key.api_key == MIRROR_STATES_KEY as i16);
    let connect = MirroringRemoteClusterRequest {
        request: MirrorConnect {
            remote_id: home.remote_id.clone(),
        },
    };
    let request = ObjectMirroringRequest::try_encode_from(connect, version)
        .map_err(|err| EncodeError::Encoder(std::io::Error::other(err.to_string())))?;
    write
        .write_all(&encode_request(
            MIRRORING_KEY,
            version,
            1,
            CLIENT_ID,
            &request,
        )?)
        .await?;
    info!(home = %home.id, endpoint = %home.public_endpoint, remote_id = %home.remote_id, "connecting to the home for mirroring");
    let mut sent_states: Option<Vec<TopicMirrorState>> = None;
    let mut correlation = 1;
    loop {
        if states_spoken {
            // The state of the copies this side receives, whenever it changes.
            let states = cluster.receiving_states(&home.id);
            if sent_states.as_ref() != Some(&states) {
                correlation += 1;
                let request = MirrorStates {
                    topics: states.clone(),
                };
                write
                    .write_all(&encode_request(
                        MIRROR_STATES_KEY,
                        0,
                        correlation,
                        CLIENT_ID,
                        &request,
                    )?)
                    .await?;
                sent_states = Some(states);
            }
        }
        let frame = tokio::select! {
            frame = frames.next() => frame?.ok_or(RemoteError::Closed)?,
            changed = changes.changed() => {
                if changed.is_err() || cluster.home().as_ref() != Some(home) {
                    return Ok(());
                }
                continue;
            }
        };
        if states_spoken && frame.get(..4) == Some(&MIRROR_STATES_CORRELATION.to_be_bytes()[..]) {
            let states: MirrorStates = decode_body(&frame, 4, 0, "MirrorStates")?;
            let (sync_cluster, home_id) = (Arc::clone(cluster), home.id.clone());
            // Following writes the metadata: off the async workers.
            tokio::task::spawn_blocking(move || {
                sync_cluster.follow_peer_states(&home_id, &states.topics)
            })
            .await
            .map_err(|err| RemoteError::Apply(ApiError::Invalid(err.to_string())))??;
            continue;
        }
        let response: MirroringStatusResponse =
            decode_body(&frame, 4, version, "MirroringStatusResponse")?;
        if !response.error_code.is_ok() {
            let reason = response
                .error_message
                .unwrap_or_else(|| response.error_code.to_string());
            return Err(RemoteError::Refused(reason));
        }
        let wanted: Vec<RemoteCopy> = response
            .topics
            .into_iter()
            .map(|topic| RemoteCopy {
                target: matches!(topic.spec.replicas(), ReplicaSpec::Mirror(MirrorConfig::Home(h)) if h.source),
                name: topic.key,
                home_spu: HomeSpu {
                    id: topic.spu_id,
                    key: topic.spu_key,
                    endpoint: topic.spu_endpoint,
                },
            })
            .collect();
        let (sync_cluster, home_id) = (Arc::clone(cluster), home.id.clone());
        // Creating and deleting topics syncs files: off the async workers.
        tokio::task::spawn_blocking(move || sync_cluster.sync_from_home(&home_id, &wanted))
            .await
            .map_err(|err| RemoteError::Apply(ApiError::Invalid(err.to_string())))??;
        cluster.mirror_status_from_sc(&home.id, sc_status(MirrorPairStatus::Successful, true));
    }
}
