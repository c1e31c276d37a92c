//! Frames of the control plane: the same `[i32 size][header][body]` as the
//! public APIs; bodies are encoded and decoded at the header's version.

use std::io::{self, Cursor};

use bytes::{BufMut, Bytes, BytesMut};
use fluvio_protocol::{Decoder, Encoder};

/// Why a control-plane frame was refused.
#[derive(Debug)]
pub enum FrameError {
    /// The header is malformed.
    Header(String),
    /// The body does not decode at the header's version.
    Body(io::Error),
    /// Bytes remain after the body.
    Trailing(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Header(reason) => write!(f, "malformed header: {reason}"),
            FrameError::Body(err) => write!(f, "malformed body: {err}"),
            FrameError::Trailing(n) => write!(f, "{n} trailing bytes after the body"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame's header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Api key.
    pub api_key: u16,
    /// Version the body is encoded at.
    pub api_version: i16,
    /// Correlation id (always 1 on this connection in Fluvio).
    pub correlation_id: i32,
    /// Who sent it (`"spu: <id>"`, `"sc"`, or Fluvio's default `"dummy"`).
    pub client_id: String,
}

/// Parses the header of a frame (the bytes after the size prefix); returns
/// it with the offset of the body.
pub fn parse_header(frame: &[u8]) -> Result<(Header, usize), FrameError> {
    let mut cursor = Cursor::new(frame);
    let mut header = fluvio_protocol::api::RequestHeader::default();
    header
        .decode(&mut cursor, 0)
        .map_err(|e| FrameError::Header(e.to_string()))?;
    Ok((
        Header {
            api_key: header.api_key(),
            api_version: header.api_version(),
            correlation_id: header.correlation_id(),
            client_id: header.client_id().clone(),
        },
        cursor.position() as usize,
    ))
}

/// Decodes a body at `version`; every byte must be used.
pub fn decode_body<T: Decoder + Default>(
    frame: &[u8],
    body_start: usize,
    version: i16,
) -> Result<T, FrameError> {
    let body = frame.get(body_start..).unwrap_or_default();
    let mut cursor = Cursor::new(body);
    let value = T::decode_from(&mut cursor, version).map_err(FrameError::Body)?;
    let left = body.len() - cursor.position() as usize;
    if left > 0 {
        return Err(FrameError::Trailing(left));
    }
    Ok(value)
}

/// Encodes a request frame, size prefix included, with correlation id 1 as
/// Fluvio does on this connection.
pub fn encode_request<T: Encoder>(
    api_key: u16,
    version: i16,
    client_id: &str,
    body: &T,
) -> io::Result<Bytes> {
    let mut header = fluvio_protocol::api::RequestHeader::new(api_key);
    header.set_api_version(version);
    header.set_correlation_id(1);
    header.set_client_id(client_id);
    let size = header.write_size(0) + body.write_size(version);
    let mut out = BytesMut::with_capacity(4 + size).writer();
    out.get_mut()
        .put_i32(i32::try_from(size).map_err(io::Error::other)?);
    header.encode(out.get_mut(), 0)?;
    body.encode(out.get_mut(), version)?;
    Ok(out.into_inner().freeze())
}

/// Encodes a response frame (correlation id, then body), size prefix included.
pub fn encode_response<T: Encoder>(
    correlation_id: i32,
    version: i16,
    body: &T,
) -> io::Result<Bytes> {
    let size = 4 + body.write_size(version);
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(i32::try_from(size).map_err(io::Error::other)?);
    out.put_i32(correlation_id);
    body.encode(&mut out, version)?;
    Ok(out.freeze())
}
