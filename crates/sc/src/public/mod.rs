//! The SC's public port: the subset of Fluvio 0.50's SC API the official
//! client uses, with `fluvio-sc-schema` 0.50.1's own types.
//!
//! ```text
//! ApiVersions (18)
//! Create (1001)  Topic (computed, or a home mirror topic), Mirror (a remote)
//! Delete (1002)  Topic, Mirror
//! List   (1003)  Topic, Partition, SPU, Mirror
//! Watch  (1004)  Topic, Partition, SPU: a full sync now, another whenever
//!                the kind changes, all on the watch's correlation id
//! Mirroring (1005) a remote SC's MirrorConnect: the connection becomes its
//!                stream (`crate::mirroring::home`)
//! MirrorOperate (7001), MirrorReport (7002): mirror-guard's own, for
//!                operating mirrors ([`operate`])
//! ```
//!
//! Anything else closes the connection with a logged reason.

//!
//! Map: this module is the listener and the connection loop; [`dispatch`]
//! turns a request into its answer; [`operate`] answers the requests that
//! operate mirrors; [`projection`] renders the cluster as
//! Fluvio's metadata types; [`watch`] keeps a watch's stream going.

mod dispatch;
mod operate;
mod projection;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use mg_transport::{FrameLimits, FrameReader, RunningServer, ServerLimits, ShutdownSignal};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tracing::warn;

use crate::cluster::Cluster;
use crate::mirroring::MirroringAccess;
use mg_transport::tls::Accepted;

/// Why a client connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum PublicError {
    /// The request did not decode.
    #[error("malformed request: {0}")]
    Decode(std::io::Error),
    /// The request decoded, but its object type did not.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A request this SC does not serve.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Writing to the client failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// This side could not build its answer: a bug, never the client's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Admin requests are small: 16 MiB is far above any, and a frame that
/// stalls half-sent for 30 s is dropped.
const FRAME_LIMITS: FrameLimits = FrameLimits {
    max_frame: 16 << 20,
    read_timeout: std::time::Duration::from_secs(30),
};

pub use crate::versions::{PLATFORM_VERSION, SERVED_VERSIONS};

/// The connection's write half, shared by its requests and its watches.
type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// A running public server: [`addr`](RunningServer::addr) is where clients connect,
/// [`shutdown`](RunningServer::shutdown) stops it after the requests in hand.
pub type RunningPublic = RunningServer;

/// Serves the public port on `listen`.
pub async fn serve_public(
    listen: SocketAddr,
    cluster: Arc<Cluster>,
    access: MirroringAccess,
) -> std::io::Result<RunningPublic> {
    if access.insecure {
        warn!(
            "--insecure-mirroring: plaintext MirrorConnect is accepted, remote ids taken as claimed"
        );
    }
    let access = Arc::new(access);
    mg_transport::start(
        "sc public",
        listen,
        ServerLimits::default(),
        (),
        move |socket, peer, stop| {
            let (cluster, access) = (cluster.clone(), access.clone());
            async move {
                match mg_transport::tls::accept(socket, access.tls.as_ref()).await {
                    Ok(Accepted::Plain(socket)) => {
                        serve_client(socket, peer, cluster, &access, stop).await
                    }
                    Ok(Accepted::Tls(stream, proven)) => {
                        let served = crate::mirroring::home::serve_tls(
                            *stream, proven, &cluster, peer, &access, stop,
                        )
                        .await;
                        if let Err(reason) = served {
                            warn!(%peer, %reason, "closing connection");
                        }
                    }
                    Err(err) => {
                        access.metrics.mirror_refused("TLS handshake failed");
                        warn!(%peer, %err, "closing connection: TLS handshake failed");
                    }
                }
            }
        },
    )
    .await
}

async fn serve_client(
    socket: TcpStream,
    peer: SocketAddr,
    cluster: Arc<Cluster>,
    access: &MirroringAccess,
    mut stop: ShutdownSignal,
) {
    let (read, write) = socket.into_split();
    let writer: Writer = Arc::new(Mutex::new(write));
    let mut frames = FrameReader::new(read, FRAME_LIMITS);
    // Closing the connection ends its watches.
    let (closed_tx, closed) = tokio::sync::watch::channel(false);
    let mut watches = JoinSet::new();
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = stop.wait() => break,
        };
        let frame = match frame {
            Ok(None) => break,
            Ok(Some(frame)) => frame,
            Err(err) => {
                warn!(reason = %err, "closing connection");
                break;
            }
        };
        if mg_transport::RequestHeader::parse(&frame)
            .is_ok_and(|(header, _)| header.api_key == crate::mirroring::MIRRORING_KEY)
        {
            // A remote's MirrorConnect: the connection carries its stream
            // from now on, and ends with it.
            let mut writer = writer.lock().await;
            let served = crate::mirroring::home::serve(
                &frame,
                &mut frames,
                &mut *writer,
                &cluster,
                peer,
                None,
                access,
                stop.clone(),
            )
            .await;
            if let Err(reason) = served {
                warn!(%peer, %reason, "closing connection");
            }
            break;
        }
        let ours = mg_transport::RequestHeader::parse(&frame)
            .is_ok_and(|(header, _)| operate::serves(header.api_key));
        if ours {
            if let Err(reason) = operate::handle(&frame, &cluster, &writer).await {
                warn!(%reason, "closing connection");
                break;
            }
            continue;
        }
        if let Err(reason) =
            dispatch::handle(&frame, &cluster, &writer, &closed, &mut watches).await
        {
            warn!(%reason, "closing connection");
            break;
        }
    }
    let _ = closed_tx.send(true);
    while watches.join_next().await.is_some() {}
}

async fn send(writer: &Writer, bytes: &[u8]) -> std::io::Result<()> {
    writer.lock().await.write_all(bytes).await
}
