//! Fluvio's frame: an i32 size prefix, then that many bytes.
//!
//! The size is checked the moment its four bytes arrive. A negative size or
//! one over the limit is an error at once, so the body of an oversized frame
//! is never buffered and the connection can be closed with a reason.

use bytes::{Buf, Bytes, BytesMut};
use mg_wire::{WireError, frame_size};
use tokio_util::codec::Decoder;

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The size prefix is negative or over the limit.
    #[error("{0}")]
    Size(WireError),
}

/// Splits a byte stream into frames (the bytes after each size prefix).
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

/// How much to reserve ahead for a frame still arriving: enough to read it
/// in few system calls, never the whole declared size up front, so a peer
/// cannot make us allocate by announcing a large frame.
const READ_AHEAD: usize = 256 * 1024;

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = src.first_chunk::<4>() else {
            return Ok(None);
        };
        let size = frame_size(*prefix, self.max_frame).map_err(FrameError::Size)?;
        if src.len() < 4 + size {
            src.reserve((4 + size - src.len()).min(READ_AHEAD));
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(size).freeze()))
    }
}
