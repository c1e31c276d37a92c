//! The frame size prefix and the request header shared by every API.
//!
//! ```text
//! [i32 size] [u16 api_key] [i16 api_version] [i32 correlation_id] [i16 len + client_id] [body…]
//! ```
//!
//! The size prefix does not count itself. A codec reads it with
//! [`frame_size`], then hands the `size` bytes that follow to
//! [`RequestHeader::parse`].

use crate::error::{Field, WireError};
use crate::reader::Reader;

/// Fluvio's `MAX_BYTES` (50 MiB): the default frame-size limit.
pub const DEFAULT_MAX_FRAME: usize = 52_428_800;

/// Reads a frame's i32 size prefix and checks it against `limit`.
///
/// A negative size or one over the limit is an error, so a server can close
/// the connection before it buffers a single byte of the body.
pub fn frame_size(prefix: [u8; 4], limit: usize) -> Result<usize, WireError> {
    let size = i32::from_be_bytes(prefix);
    let size = usize::try_from(size).map_err(|_| WireError::NegativeFrameSize(size))?;
    if size > limit {
        return Err(WireError::FrameTooLarge { size, limit });
    }
    Ok(size)
}

/// The request header, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    /// Which API the body belongs to.
    pub api_key: u16,
    /// The version the body, and its response, are encoded at.
    pub api_version: i16,
    /// Echoed in the response; the client routes responses by it.
    pub correlation_id: i32,
    /// The client's self-declared name (`"fluvio"` for the official client).
    pub client_id: &'a str,
}

impl<'a> RequestHeader<'a> {
    /// Parses the header at the start of `frame` (the bytes after the size
    /// prefix) and returns it with the offset where the body starts.
    #[inline]
    pub fn parse(frame: &'a [u8]) -> Result<(Self, usize), WireError> {
        let mut r = Reader::new(frame, 0);
        let header = RequestHeader {
            api_key: r.u16(Field::ApiKey)?,
            api_version: r.i16(Field::ApiVersion)?,
            correlation_id: r.i32(Field::CorrelationId)?,
            client_id: r.str(Field::ClientId)?,
        };
        Ok((header, r.pos()))
    }
}
