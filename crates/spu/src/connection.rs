//! One client connection: frames in, responses out, in request order.
//!
//! ```text
//! socket -> FrameReader -> header -> dispatch by api key -> handler -> response bytes -> socket
//! ```
//!
//! Requests may be pipelined; they are answered one after another, each
//! response carrying its request's correlation id. A frame that cannot be
//! decoded, or one that stalls half-sent past the read deadline, closes this
//! connection with a warning naming the peer and the reason; every other
//! connection keeps being served, and nothing answered before is affected.
//! At shutdown the request in hand is finished and answered first.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_guard::Guard;
use mg_transport::{FrameLimits, FrameReader, RequestHeader, ShutdownSignal};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, debug_span, error, warn};

use crate::changes::{Offsets, Unreported};
use crate::disk::Disk;
use crate::handlers::produce::ProduceHandles;
use crate::handlers::stream::{self, StreamHandles, Streams};
use crate::handlers::{self, HandlerError, Writer, api};
use crate::metrics::Metrics;

/// What every connection of an SPU is served with.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) limits: FrameLimits,
    pub(crate) disk: Disk,
    pub(crate) offsets: Arc<Offsets>,
    pub(crate) unreported: Arc<Unreported>,
    pub(crate) metrics: Arc<Metrics>,
    /// Benchmark builds only: whether produce is judged.
    #[cfg(feature = "bench-hooks")]
    pub(crate) guard_enabled: bool,
}

/// Serves one client until it leaves, misbehaves, or shutdown comes.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    context: ConnectionContext,
    mut guard: Guard,
    mut shutdown: ShutdownSignal,
) {
    let metrics = Arc::clone(&context.metrics);
    metrics.connections(1);
    let (read, write) = socket.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
    let mut streams = Streams::default();
    let mut frames = FrameReader::new(read, context.limits);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = shutdown.wait() => break,
        };
        let frame = match frame {
            Ok(None) => {
                debug!("peer closed the connection");
                break;
            }
            Err(err) if err.is_malformed() => {
                metrics.malformed();
                warn!(%peer, reason = %err, "closing connection");
                break;
            }
            Err(err) => {
                debug!(%peer, %err, "read failed");
                break;
            }
            Ok(Some(frame)) => frame,
        };
        out.clear();
        let mut request = Request {
            guard: &mut guard,
            context: &context,
            streams: &mut streams,
            writer: &writer,
        };
        match request.handle(&frame, &mut out).await {
            Ok(()) if out.is_empty() => {}
            Ok(()) => {
                if let Err(err) = writer.lock().await.write_all(&out).await {
                    debug!(%peer, %err, "write failed");
                    break;
                }
            }
            Err(reason @ HandlerError::Internal(_)) => {
                error!(%peer, %reason, "closing connection");
                break;
            }
            Err(reason) => {
                if reason.is_client_fault() {
                    metrics.malformed();
                    warn!(%peer, %reason, "closing connection");
                } else {
                    debug!(%peer, %reason, "closing connection");
                }
                break;
            }
        }
    }
    streams.close().await;
    metrics.connections(-1);
}

/// One request and what its handler may touch.
struct Request<'c> {
    guard: &'c mut Guard,
    context: &'c ConnectionContext,
    streams: &'c mut Streams,
    writer: &'c Writer,
}

impl Request<'_> {
    /// Handles one frame; its response, if it has one now, goes to `out`.
    async fn handle(&mut self, frame: &Bytes, out: &mut BytesMut) -> Result<(), HandlerError> {
        let (header, body_start) = RequestHeader::parse(frame)?;
        let span = debug_span!(
            "request",
            api_key = header.api_key,
            correlation_id = header.correlation_id
        );
        let cx = self.context;
        let streaming = || StreamHandles {
            roles: self.guard.table(),
            disk: &cx.disk,
            offsets: &cx.offsets,
        };
        match header.api_key {
            api::PRODUCE => {
                let handles = ProduceHandles {
                    disk: &cx.disk,
                    offsets: &cx.offsets,
                    unreported: &cx.unreported,
                    metrics: &cx.metrics,
                    #[cfg(feature = "bench-hooks")]
                    guard_enabled: cx.guard_enabled,
                };
                handlers::produce::handle(frame, header, body_start, self.guard, handles, out)
                    .instrument(span)
                    .await
            }
            api::FETCH => {
                handlers::fetch::handle(
                    frame,
                    header,
                    body_start,
                    self.guard.table(),
                    &cx.disk,
                    out,
                )
                .instrument(span)
                .await
            }
            api::FETCH_OFFSETS => {
                stream::fetch_offsets(frame, &header, body_start, streaming(), out)
                    .instrument(span)
                    .await
            }
            api::STREAM_FETCH => {
                let handles = streaming();
                stream::stream_fetch(
                    frame,
                    &header,
                    body_start,
                    handles,
                    self.streams,
                    self.writer,
                )
                .instrument(span)
                .await
            }
            api::UPDATE_OFFSETS => {
                let _entered = span.enter();
                stream::update_offsets(frame, &header, body_start, self.streams, out)
            }
            api::API_VERSIONS => handlers::api_versions(frame, &header, body_start, out),
            other => Err(HandlerError::UnknownApiKey(other)),
        }
    }
}
