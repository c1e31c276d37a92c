//! Frames off a byte stream: `[i32 size][size bytes]`.
//!
//! Invariants the reader keeps:
//! - the size is checked the moment its four bytes arrive: a negative size
//!   or one over the limit is an error at once, so the body of an oversized
//!   frame is never buffered;
//! - it never reserves the declared size up front, only what it reads next
//!   (at most [`READ_AHEAD`]), so announcing a large frame costs a peer
//!   nothing of ours;
//! - a frame that has begun to arrive must finish within the read deadline;
//!   an idle connection between frames has no deadline.
//!
//! [`FrameReader::next`] is cancel safe: everything read stays in the reader,
//! so it can sit in a `select!` beside a shutdown signal.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mg_wire::{WireError, frame_size};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// How much to reserve ahead for a frame still arriving.
pub const READ_AHEAD: usize = 256 * 1024;
/// The read buffer a connection starts with.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed, or the peer closed it in the middle of a frame.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The size prefix is negative or over the limit.
    #[error("{0}")]
    Size(WireError),
    /// A frame began to arrive and did not finish within the read deadline.
    #[error(
        "partial frame stalled: {buffered} bytes buffered, nothing completed it for {waited:?}"
    )]
    Stalled {
        /// Bytes of the unfinished frame held.
        buffered: usize,
        /// The read deadline that passed.
        waited: Duration,
    },
}

impl FrameError {
    /// Whether the peer sent something malformed (as opposed to the socket
    /// failing): such closes are counted and logged as warnings.
    pub fn is_malformed(&self) -> bool {
        matches!(self, FrameError::Size(_) | FrameError::Stalled { .. })
    }
}

/// The limits a reader enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Frames larger than this are refused (default: Fluvio's 50 MiB).
    pub max_frame: usize,
    /// How long a frame may take from its first byte to its last.
    pub read_timeout: Duration,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_frame: mg_wire::DEFAULT_MAX_FRAME,
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Reads whole frames (the bytes after each size prefix) from `R`.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    limits: FrameLimits,
    /// When the first byte of the frame now arriving was seen.
    partial_since: Option<Instant>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `io` enforcing `limits`.
    pub fn new(io: R, limits: FrameLimits) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
            limits,
            partial_since: None,
        }
    }

    /// The next frame; `None` when the peer closed the connection between
    /// frames. Cancel safe.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(Some(frame));
            }
            let read = if self.buf.is_empty() {
                self.partial_since = None;
                self.io.read_buf(&mut self.buf).await?
            } else {
                let since = *self.partial_since.get_or_insert_with(Instant::now);
                let deadline = since + self.limits.read_timeout;
                match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                    Ok(read) => read?,
                    Err(_) => {
                        return Err(FrameError::Stalled {
                            buffered: self.buf.len(),
                            waited: self.limits.read_timeout,
                        });
                    }
                }
            };
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "peer closed the connection {} bytes into a frame",
                        self.buf.len()
                    ),
                )));
            }
        }
    }

    /// Takes one whole frame off the buffer, if there is one.
    fn decode(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<4>() else {
            self.reserve_for(4);
            return Ok(None);
        };
        let size = frame_size(*prefix, self.limits.max_frame).map_err(FrameError::Size)?;
        if self.buf.len() < 4 + size {
            self.reserve_for(4 + size);
            return Ok(None);
        }
        self.buf.advance(4);
        let frame = self.buf.split_to(size).freeze();
        // Bytes left over belong to the next frame, already on its way.
        self.partial_since = (!self.buf.is_empty()).then(Instant::now);
        Ok(Some(frame))
    }

    /// Makes room to read towards a frame of `total` bytes, never more than
    /// [`READ_AHEAD`] at a time.
    fn reserve_for(&mut self, total: usize) {
        let missing = total.saturating_sub(self.buf.len());
        let want = missing.clamp(INITIAL_BUFFER, READ_AHEAD);
        if self.buf.capacity() - self.buf.len() < want / 2 {
            self.buf.reserve(want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn limits(max_frame: usize) -> FrameLimits {
        FrameLimits {
            max_frame,
            read_timeout: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_pipelined() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx, limits(1024));
        let mut wire = Vec::new();
        for body in [&b"abc"[..], b"", &[7u8; 300]] {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        let writer = tokio::spawn(async move {
            for chunk in wire.chunks(5) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        assert_eq!(&reader.next().await.unwrap().unwrap()[..], b"abc");
        assert_eq!(&reader.next().await.unwrap().unwrap()[..], b"");
        assert_eq!(&reader.next().await.unwrap().unwrap()[..], &[7u8; 300][..]);
        writer.await.unwrap();
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_and_negative_sizes_fail_before_the_body() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx, limits(16));
        tx.write_all(&17i32.to_be_bytes()).await.unwrap();
        let err = reader.next().await.unwrap_err();
        assert!(matches!(
            err,
            FrameError::Size(WireError::FrameTooLarge {
                size: 17,
                limit: 16
            })
        ));
        assert!(err.is_malformed());

        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx, limits(16));
        tx.write_all(&(-1i32).to_be_bytes()).await.unwrap();
        assert!(matches!(
            reader.next().await.unwrap_err(),
            FrameError::Size(WireError::NegativeFrameSize(-1))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_partial_frame_hits_the_deadline_an_idle_one_does_not() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx, limits(1024));
        // Idle: no byte of a frame yet, so no deadline however long it waits.
        let idle = tokio::time::timeout(Duration::from_secs(3600), reader.next()).await;
        assert!(idle.is_err(), "an idle connection must not time out");
        tx.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        let err = reader.next().await.unwrap_err();
        assert!(
            matches!(err, FrameError::Stalled { buffered: 6, .. }),
            "got {err:?}"
        );
        assert!(err.is_malformed());
    }

    #[tokio::test]
    async fn closing_mid_frame_is_an_error_not_a_clean_end() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx, limits(1024));
        tx.write_all(&[0, 0, 0, 10, 1]).await.unwrap();
        drop(tx);
        let err = reader.next().await.unwrap_err();
        assert!(matches!(err, FrameError::Io(ref io) if io.kind() == io::ErrorKind::UnexpectedEof));
    }
}
