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
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use mg_guard::Guard;
use mg_transport::tls::{Accepted, TlsServer};
use mg_transport::{FrameLimits, FrameReader, RequestHeader, ShutdownSignal};
use mg_wire::ProduceRequest;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, debug_span, error, warn};

use crate::handlers::produce::ProduceHandles;
use crate::handlers::stream::{self, StreamHandles, Streams};
use crate::handlers::{self, HandlerError, Writer, api};
use crate::mirroring::MirrorHandles;
use crate::mirroring::protocol::START_MIRROR;

/// What every connection of an SPU is served with.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) limits: FrameLimits,
    pub(crate) produce: ProduceHandles,
    pub(crate) mirror: MirrorHandles,
    /// The TLS side of the public port (mirror traffic), if configured.
    pub(crate) tls: Option<TlsServer>,
}

/// Produce requests a connection keeps in flight (judged, waiting on
/// storage) while it reads the ones after them.
const MAX_PIPELINE: usize = 32;

/// Serves one client until it leaves, misbehaves, or shutdown comes.
///
/// Produce requests are pipelined: each is checked here, in order, then
/// runs as a future of its own (judge, append, answer) while the next
/// frames are read, so a storage writer gets a connection's requests in
/// batches instead of one wake-up each. Responses go out strictly in
/// request order: any other request first waits for the produce requests
/// ahead of it to be answered.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    context: ConnectionContext,
    mut guard: Guard,
    mut shutdown: ShutdownSignal,
) {
    let socket = match mg_transport::tls::accept(socket, context.tls.as_ref()).await {
        Ok(Accepted::Plain(socket)) => socket,
        Ok(Accepted::Tls(stream, proven)) => {
            let (handles, stop) = (&context.mirror, shutdown.clone());
            crate::mirroring::home::serve_tls(*stream, proven, peer, context.limits, handles, stop)
                .instrument(debug_span!("mirror", %peer))
                .await;
            return;
        }
        Err(err) => {
            context
                .mirror
                .metrics
                .mirror_refused("TLS handshake failed");
            warn!(%peer, %err, "closing connection: TLS handshake failed");
            return;
        }
    };
    let metrics = Arc::clone(&context.produce.metrics);
    metrics.connections(1);
    let (read, write) = socket.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
    let mut streams = Streams::default();
    let mut frames = FrameReader::new(read, context.limits);
    let mut in_flight = FuturesOrdered::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let close = |reason: &HandlerError| match reason {
        HandlerError::Internal(_) => error!(%peer, %reason, "closing connection"),
        reason if reason.is_client_fault() => {
            metrics.malformed();
            warn!(%peer, %reason, "closing connection");
        }
        reason => debug!(%peer, %reason, "closing connection"),
    };
    loop {
        let reading = in_flight.len() < MAX_PIPELINE && !shutdown.is_set();
        let frame = tokio::select! {
            biased;
            Some(done) = in_flight.next() => {
                if answer(&writer, peer, done, &close).await {
                    continue;
                }
                break;
            }
            frame = frames.next(), if reading => frame,
            () = shutdown.wait(), if in_flight.is_empty() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            end => {
                // The requests taken in before the end (or the bad frame)
                // are answered first: a client may close its side and
                // still read.
                while let Some(done) = in_flight.next().await {
                    if !answer(&writer, peer, done, &close).await {
                        break;
                    }
                }
                match end {
                    Err(err) if err.is_malformed() => {
                        metrics.malformed();
                        warn!(%peer, reason = %err, "closing connection");
                    }
                    Err(err) => debug!(%peer, %err, "read failed"),
                    _ => debug!("peer closed the connection"),
                }
                break;
            }
        };
        // A well-formed produce request goes into the pipeline; anything
        // else (a bad frame included) waits until those ahead of it are
        // answered, so that answers keep their order.
        if let Some(produce) = pipelined(&frame, &guard, &context, peer) {
            in_flight.push_back(produce);
            continue;
        }
        let mut answered = true;
        while answered && let Some(done) = in_flight.next().await {
            answered = answer(&writer, peer, done, &close).await;
        }
        if !answered {
            break;
        }
        if RequestHeader::parse(&frame).is_ok_and(|(header, _)| header.api_key == START_MIRROR) {
            // From here on this connection is a mirror link: it speaks only
            // the mirror protocol, and ends with it.
            std::mem::take(&mut streams).close().await;
            let mut writer = writer.lock().await;
            let (handles, stop) = (&context.mirror, shutdown.clone());
            crate::mirroring::home::serve(
                &frame,
                &mut frames,
                &mut *writer,
                peer,
                None,
                handles,
                stop,
            )
            .instrument(debug_span!("mirror", %peer))
            .await;
            break;
        }
        out.clear();
        let mut request = Request {
            guard: &mut guard,
            context: &context,
            streams: &mut streams,
            writer: &writer,
        };
        let done = request.handle(&frame, &mut out).await.map(|()| &out[..]);
        if !answer(&writer, peer, done, &close).await {
            break;
        }
    }
    streams.close().await;
    metrics.connections(-1);
}

/// Writes a request's answer (nothing if it has none); on a handler error
/// or a failed write, says why and returns `false`: the connection closes.
async fn answer(
    writer: &Writer,
    peer: SocketAddr,
    done: Result<impl AsRef<[u8]>, HandlerError>,
    close: &impl Fn(&HandlerError),
) -> bool {
    match done {
        Ok(response) if response.as_ref().is_empty() => true,
        Ok(response) => match writer.lock().await.write_all(response.as_ref()).await {
            Ok(()) => true,
            Err(err) => {
                debug!(%peer, %err, "write failed");
                false
            }
        },
        Err(reason) => {
            close(&reason);
            false
        }
    }
}

/// The future that serves `frame`, if it is a well-formed Produce request.
/// It is checked here, so that a malformed one is found in order, before
/// any request after it is read.
fn pipelined(
    frame: &Bytes,
    guard: &Guard,
    context: &ConnectionContext,
    peer: SocketAddr,
) -> Option<impl Future<Output = Result<BytesMut, HandlerError>> + use<>> {
    let (header, body_start) = RequestHeader::parse(frame).ok()?;
    if header.api_key != api::PRODUCE {
        return None;
    }
    // The same walk the guard makes; a frame it refuses is judged (and
    // counted) by the guard itself, in `Request::handle`.
    let checked = ProduceRequest::parse_body(frame, &header, body_start).is_ok();
    if !checked {
        return None;
    }
    let span = debug_span!(
        "request",
        api_key = header.api_key,
        correlation_id = header.correlation_id
    );
    let produce =
        handlers::produce::handle(frame.clone(), guard.clone(), context.produce.clone(), peer);
    Some(produce.instrument(span))
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
        let cx = &self.context.produce;
        let streaming = || StreamHandles {
            roles: self.guard.table(),
            disk: &cx.disk,
            offsets: &cx.offsets,
        };
        match header.api_key {
            // Well-formed produce requests are pipelined (see `serve`); one
            // that reaches here is malformed, and judging it says why.
            api::PRODUCE => {
                let _entered = span.enter();
                self.guard.judge_body(frame, header, body_start)?;
                Err(HandlerError::Internal(
                    "a well-formed produce request left the pipeline".into(),
                ))
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
