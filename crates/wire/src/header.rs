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
use crate::reader::{Bail, Fail, Reader, detailed_error, unreachable_truncation};

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
    #[inline(always)]
    pub fn parse(frame: &'a [u8]) -> Result<(Self, usize), WireError> {
        match Self::read::<Bail>(frame) {
            Ok((header, body)) => Ok((header, body.pos())),
            Err(Bail) => Err(Self::explain(frame)),
        }
    }

    /// Reads the header again, to say exactly what is wrong with it. (Only
    /// the error comes back, so the success path never waits on this
    /// call's result in memory.)
    #[cold]
    #[inline(never)]
    pub(crate) fn explain(frame: &[u8]) -> WireError {
        detailed_error(RequestHeader::read::<WireError>(frame))
    }

    /// Reads the header and returns it with a reader at the body, so a
    /// caller that goes on into the body does not slice the frame again.
    #[inline(always)]
    pub(crate) fn read<E: Fail>(frame: &'a [u8]) -> Result<(Self, Reader<'a, E>), E> {
        // The four fixed fields and the client id's length: one bounds check.
        let Some(fixed) = frame.first_chunk::<10>() else {
            return Err(E::from_error(|| Self::truncated(frame)));
        };
        let word = |at: usize| [fixed[at], fixed[at + 1]];
        let mut r = Reader::<E>::new(frame, 8);
        let client_id = r.str(Field::ClientId)?;
        let header = RequestHeader {
            api_key: u16::from_be_bytes(word(0)),
            api_version: i16::from_be_bytes(word(2)),
            correlation_id: i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            client_id,
        };
        Ok((header, r))
    }

    /// The precise error for a frame shorter than the fixed header fields.
    #[cold]
    fn truncated(frame: &[u8]) -> WireError {
        let mut r = Reader::<WireError>::new(frame, 0);
        let mut first_missing = || -> Result<(), WireError> {
            r.u16(Field::ApiKey)?;
            r.i16(Field::ApiVersion)?;
            r.i32(Field::CorrelationId)?;
            r.i16(Field::ClientId)?;
            Ok(())
        };
        match first_missing() {
            Err(err) => err,
            Ok(()) => unreachable_truncation(),
        }
    }
}
