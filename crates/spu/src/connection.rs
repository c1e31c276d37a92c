//! One client connection: frames in, responses out, in request order.
//!
//! ```text
//! socket -> FrameCodec -> header -> dispatch by api key -> handler -> response bytes -> socket
//! ```
//!
//! Requests may be pipelined; they are answered one after another, each
//! response carrying its request's correlation id. A frame that cannot be
//! decoded closes this connection, with a warning naming the peer and the
//! reason; every other connection keeps being served, and nothing answered
//! before is affected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use mg_guard::Guard;
use mg_wire::{
    ApiVersionKey, ErrorCode, PRODUCE_VERSIONS, RequestHeader, WireError, write_api_versions,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tracing::{Instrument, debug, debug_span, warn};

use crate::codec::{FrameCodec, FrameError};
use crate::server::Shared;
use crate::stream::{self, Streams, Writer};

/// Api keys this SPU serves.
pub mod api {
    /// Produce.
    pub const PRODUCE: u16 = 0;
    /// Fetch.
    pub const FETCH: u16 = 1;
    /// ApiVersions.
    pub const API_VERSIONS: u16 = 18;
    /// FetchOffsets.
    pub const FETCH_OFFSETS: u16 = 1002;
    /// StreamFetch.
    pub const STREAM_FETCH: u16 = 1003;
    /// UpdateOffsets.
    pub const UPDATE_OFFSETS: u16 = 1005;
}

/// What this SPU advertises in ApiVersions: the rows Fluvio 0.50's SPU
/// advertises for the APIs served here.
pub const SERVED_VERSIONS: [ApiVersionKey; 5] = [
    PRODUCE_VERSIONS,
    ApiVersionKey {
        api_key: api::FETCH,
        min_version: 0,
        max_version: 25,
    },
    ApiVersionKey {
        api_key: api::FETCH_OFFSETS,
        min_version: 25,
        max_version: 25,
    },
    ApiVersionKey {
        api_key: api::STREAM_FETCH,
        min_version: 0,
        max_version: 25,
    },
    ApiVersionKey {
        api_key: api::UPDATE_OFFSETS,
        min_version: 0,
        max_version: 0,
    },
];

/// The Fluvio platform version this SPU speaks.
pub const PLATFORM_VERSION: &str = "0.50.1";

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    #[error("malformed frame: {0}")]
    Malformed(#[from] WireError),
    #[error("malformed {api} request: {reason}")]
    MalformedBody { api: &'static str, reason: String },
    #[error("unknown api key {0}")]
    UnknownApiKey(u16),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut guard: Guard,
    mut stop: watch::Receiver<bool>,
) {
    shared.metrics.connections(1);
    let (read, write) = socket.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
    let mut streams = Streams::default();
    let mut frames = FramedRead::new(read, FrameCodec::new(shared.config.max_frame));
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            _ = stop.changed() => break,
        };
        let frame = match frame {
            None => {
                debug!("peer closed the connection");
                break;
            }
            Some(Err(FrameError::Size(err))) => {
                shared.metrics.malformed();
                warn!(%peer, reason = %err, "closing connection");
                break;
            }
            Some(Err(FrameError::Io(err))) => {
                debug!(%peer, %err, "read failed");
                break;
            }
            Some(Ok(frame)) => frame,
        };
        out.clear();
        let mut connection = Connection {
            guard: &mut guard,
            shared: &shared,
            streams: &mut streams,
            writer: &writer,
        };
        match connection.handle(&frame, &mut out).await {
            Ok(()) if out.is_empty() => {}
            Ok(()) => {
                if let Err(err) = writer.lock().await.write_all(&out).await {
                    debug!(%peer, %err, "write failed");
                    break;
                }
            }
            Err(reason) => {
                if !matches!(reason, Close::Io(_)) {
                    shared.metrics.malformed();
                }
                warn!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    // Dropping the streams' ack senders ends their tasks.
    drop(streams);
    shared.metrics.connections(-1);
}

/// What a request handler may touch on its connection.
struct Connection<'c> {
    guard: &'c mut Guard,
    shared: &'c Arc<Shared>,
    streams: &'c mut Streams,
    writer: &'c Writer,
}

impl Connection<'_> {
    /// Handles one frame; its response, if it has one now, goes to `out`.
    async fn handle(&mut self, frame: &Bytes, out: &mut BytesMut) -> Result<(), Close> {
        let (header, body_start) = RequestHeader::parse(frame)?;
        let span = debug_span!(
            "request",
            api_key = header.api_key,
            correlation_id = header.correlation_id
        );
        let shared = &**self.shared;
        match header.api_key {
            api::PRODUCE => {
                crate::produce::handle(frame, header, body_start, self.guard, shared, out)
                    .instrument(span)
                    .await
            }
            api::FETCH => {
                let _entered = span.enter();
                crate::fetch::handle(frame, header, body_start, self.guard.table(), shared, out)
            }
            api::FETCH_OFFSETS => {
                let _entered = span.enter();
                let roles = self.guard.table();
                stream::fetch_offsets(frame, &header, body_start, roles, shared, out)
            }
            api::STREAM_FETCH => {
                let roles = self.guard.table();
                stream::stream_fetch(
                    frame,
                    &header,
                    body_start,
                    roles,
                    self.shared,
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
            api::API_VERSIONS => {
                check_api_versions_body(frame, &header, body_start)?;
                write_api_versions(
                    out,
                    header.correlation_id,
                    ErrorCode::None,
                    &SERVED_VERSIONS,
                    PLATFORM_VERSION,
                );
                Ok(())
            }
            other => Err(Close::UnknownApiKey(other)),
        }
    }
}

/// ApiVersions carries the client's version, OS and architecture (v1+);
/// Fluvio's decoder checks them, and so do we.
fn check_api_versions_body(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
) -> Result<(), Close> {
    use fluvio_protocol::Decoder;
    use fluvio_protocol::link::versions::ApiVersionsRequest;
    let mut body = std::io::Cursor::new(&frame[body_start..]);
    ApiVersionsRequest::decode_from(&mut body, header.api_version).map_err(|err| {
        Close::MalformedBody {
            api: "ApiVersions",
            reason: err.to_string(),
        }
    })?;
    let left = frame.len() - body_start - body.position() as usize;
    if left > 0 {
        return Err(Close::Malformed(WireError::TrailingBytes { count: left }));
    }
    Ok(())
}
