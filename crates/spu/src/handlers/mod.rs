//! The SPU's request handlers, one module per API family. Each handler
//! gets the frame, its parsed header and only the handles it uses (the
//! disk, the role reader, the log ends, the metrics), and writes its
//! response into the connection's output buffer.
//!
//! - [`produce`]: judge, append the accepted entries, commit for acks = -1,
//!   answer every entry in order.
//! - [`fetch`]: Fetch (1): whole stored batches from an offset.
//! - [`stream`]: FetchOffsets (1002), StreamFetch (1003) and UpdateOffsets
//!   (1005), what the official consumer uses.
//! - here: ApiVersions (18), the api keys, [`HandlerError`].

pub mod fetch;
pub mod produce;
pub mod stream;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_transport::{BodyError, EncodeError, RequestHeader, decode_body};
use mg_wire::{ApiVersionKey, ErrorCode, PRODUCE_VERSIONS, WireError, write_api_versions};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

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

/// The connection's write half, shared by its request loop and its streams.
pub(crate) type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// Why a request ended its connection.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The frame is malformed (header or produce body).
    #[error("malformed frame: {0}")]
    Malformed(#[from] WireError),
    /// A body Fluvio's decoder refused, or one with bytes after it.
    #[error("{0}")]
    Body(#[from] BodyError),
    /// An api key this SPU does not serve.
    #[error("unknown api key {0}")]
    UnknownApiKey(u16),
    /// Writing to the client failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// This side could not build its answer: a bug, never the client's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<EncodeError> for HandlerError {
    fn from(err: EncodeError) -> Self {
        HandlerError::Internal(err.to_string())
    }
}

impl HandlerError {
    /// Whether the client sent something it should not have (counted as a
    /// malformed frame).
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            HandlerError::Malformed(_) | HandlerError::Body(_) | HandlerError::UnknownApiKey(_)
        )
    }
}

/// ApiVersions (18). The body carries the client's version, OS and
/// architecture (v1+); Fluvio's decoder checks them, and so do we.
pub(crate) fn api_versions(
    frame: &Bytes,
    header: &RequestHeader<'_>,
    body_start: usize,
    out: &mut BytesMut,
) -> Result<(), HandlerError> {
    use fluvio_protocol::link::versions::ApiVersionsRequest;
    decode_body::<ApiVersionsRequest>(frame, body_start, header.api_version, "ApiVersions")?;
    write_api_versions(
        out,
        header.correlation_id,
        ErrorCode::None,
        &SERVED_VERSIONS,
        PLATFORM_VERSION,
    );
    Ok(())
}
