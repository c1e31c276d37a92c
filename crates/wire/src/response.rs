//! Response encoders, byte-identical to fluvio-protocol 0.50.
//!
//! A response frame is `[i32 size][i32 correlation_id][body]`, the body
//! encoded at the *request's* api_version. The writers here stream straight
//! into a caller's `BytesMut`: they reserve the size prefix, append fields in
//! wire order and patch the size in [`ResponseFrame::finish`]. Nothing is
//! built in memory first, so answering a request allocates nothing beyond the
//! output buffer's growth.

use bytes::{BufMut, BytesMut};

use crate::produce::PRODUCE_API_KEY;

/// A Fluvio error code, as it goes on the wire: an i16 tag, then the
/// variant's payload.
///
/// Only codes the 0.50 client knows are representable: it fails to decode
/// any other tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 0: success.
    None,
    /// 2: an error described by its text (Fluvio's `Other(String)`).
    Other(&'static str),
    /// -1: an error the server could not classify.
    UnknownServerError,
    /// 6: this SPU does not lead the partition (or does not know it).
    NotLeaderForPartition,
    /// 7: a read-committed produce did not commit in time.
    RequestTimedOut {
        /// The request's timeout.
        timeout_ms: u64,
    },
    /// 10: a batch is larger than the partition accepts.
    MessageTooLarge,
    /// 56: the log could not be written.
    StorageError,
    /// 72: the partition reached its size limit. On the wire it carries the
    /// partition's key, which the writer takes from the entry it answers.
    PartitionFull,
    /// 2001: no such topic.
    TopicNotFound,
    /// 9000: the batch compression does not match the topic's.
    CompressionError,
    /// 11003: clients may not produce at home to a to-home mirror partition.
    MirrorProduceFromHome,
    /// 11006: clients may not produce at the remote target of a
    /// home-to-remote mirror partition.
    MirrorProduceFromRemoteNotAllowed,
}

impl ErrorCode {
    /// The i16 tag that starts the code on the wire.
    pub const fn tag(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::Other(_) => 2,
            ErrorCode::UnknownServerError => -1,
            ErrorCode::NotLeaderForPartition => 6,
            ErrorCode::RequestTimedOut { .. } => 7,
            ErrorCode::MessageTooLarge => 10,
            ErrorCode::StorageError => 56,
            ErrorCode::PartitionFull => 72,
            ErrorCode::TopicNotFound => 2001,
            ErrorCode::CompressionError => 9000,
            ErrorCode::MirrorProduceFromHome => 11003,
            ErrorCode::MirrorProduceFromRemoteNotAllowed => 11006,
        }
    }

    /// Whether this is the success code.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }

    /// Appends the code for the partition `(topic, partition)`.
    fn put(self, out: &mut BytesMut, topic: &str, partition: u32) {
        out.put_i16(self.tag());
        match self {
            ErrorCode::RequestTimedOut { timeout_ms } => {
                out.put_u64(timeout_ms);
                out.put_u8(0); // RequestKind::Produce
            }
            ErrorCode::PartitionFull => {
                put_str(out, topic);
                out.put_u32(partition);
            }
            ErrorCode::Other(text) => put_str(out, text),
            _ => {}
        }
    }
}

impl std::fmt::Display for ErrorCode {
    /// The text Fluvio's client displays for the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::None => f.write_str("none"),
            ErrorCode::Other(text) => write!(f, "Other error: {text}"),
            ErrorCode::UnknownServerError => f.write_str("An unknown server error occurred"),
            ErrorCode::NotLeaderForPartition => {
                f.write_str("the given SPU is not the leader for the partition")
            }
            ErrorCode::RequestTimedOut { timeout_ms } => {
                write!(
                    f,
                    "the request 'Produce' exceeded the timeout {timeout_ms} ms"
                )
            }
            ErrorCode::MessageTooLarge => f.write_str("the message is too large to send"),
            ErrorCode::StorageError => f.write_str("a storage error occurred"),
            ErrorCode::PartitionFull => f.write_str("Partition storage is full"),
            ErrorCode::TopicNotFound => f.write_str("the topic was not found"),
            ErrorCode::CompressionError => f.write_str("a compression error occurred in the SPU"),
            ErrorCode::MirrorProduceFromHome => f.write_str("produce from home is not allowed"),
            ErrorCode::MirrorProduceFromRemoteNotAllowed => {
                f.write_str("produce from remote target is not allowed")
            }
        }
    }
}

/// Appends Fluvio's `String`: u16 length, then the bytes.
///
/// Strings here are names the request carried (so at most `i16::MAX` bytes)
/// or server constants.
fn put_str(out: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&s.as_bytes()[..usize::from(len)]);
}

/// A response frame being written: size prefix, correlation id, body.
#[derive(Debug)]
pub struct ResponseFrame<'b> {
    out: &'b mut BytesMut,
    start: usize,
}

impl<'b> ResponseFrame<'b> {
    /// Starts a frame at the end of `out`.
    pub fn begin(out: &'b mut BytesMut, correlation_id: i32) -> Self {
        let start = out.len();
        out.put_i32(0); // patched by `finish`
        out.put_i32(correlation_id);
        Self { out, start }
    }

    /// Patches the size prefix; returns the frame's length including it.
    pub fn finish(self) -> usize {
        let len = self.out.len() - self.start;
        let size = i32::try_from(len - 4).unwrap_or(i32::MAX);
        self.out[self.start..self.start + 4].copy_from_slice(&size.to_be_bytes());
        len
    }
}

/// Streams a ProduceResponse into a [`ResponseFrame`].
///
/// Call [`topic`](Self::topic) for each request topic, then
/// [`partition`](Self::partition) once per partition entry of that topic,
/// then [`finish`](Self::finish). The writer trusts its caller to keep the
/// counts it declared: the guard drives it from the request it answers.
#[derive(Debug)]
pub struct ProduceResponseWriter<'b> {
    frame: ResponseFrame<'b>,
    version: i16,
}

impl<'b> ProduceResponseWriter<'b> {
    /// Starts a response with `topic_count` topics at `version`.
    pub fn begin(
        out: &'b mut BytesMut,
        correlation_id: i32,
        version: i16,
        topic_count: usize,
    ) -> Self {
        let frame = ResponseFrame::begin(out, correlation_id);
        frame.out.put_u32(count(topic_count));
        Self { frame, version }
    }

    /// Starts a topic with `partition_count` entries.
    pub fn topic(&mut self, name: &str, partition_count: usize) {
        put_str(self.frame.out, name);
        self.frame.out.put_u32(count(partition_count));
    }

    /// Writes one partition entry of `topic`.
    ///
    /// `base_offset` should be 0 when `code` is an error, as Fluvio sends it.
    pub fn partition(&mut self, topic: &str, partition: u32, code: ErrorCode, base_offset: i64) {
        let out = &mut *self.frame.out;
        out.put_u32(partition);
        code.put(out, topic, partition);
        out.put_i64(base_offset);
        if self.version >= 2 {
            out.put_i64(0); // log_append_time_ms
        }
        if self.version >= 5 {
            out.put_i64(0); // log_start_offset
        }
    }

    /// Writes the trailer and patches the frame size.
    pub fn finish(self) -> usize {
        if self.version >= 1 {
            self.frame.out.put_i32(0); // throttle_time_ms
        }
        self.frame.finish()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One row of an ApiVersionsResponse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiVersionKey {
    /// The api key served.
    pub api_key: u16,
    /// Lowest version served.
    pub min_version: i16,
    /// Highest version served.
    pub max_version: i16,
}

/// The Produce row as this project serves it: every version Fluvio 0.50 defines.
pub const PRODUCE_VERSIONS: ApiVersionKey = ApiVersionKey {
    api_key: PRODUCE_API_KEY,
    min_version: crate::produce::PRODUCE_MIN_VERSION,
    max_version: crate::produce::PRODUCE_MAX_VERSION,
};

/// Writes a whole ApiVersionsResponse frame; its layout is the same at every
/// api_version. `platform_version` must be a semver string or the official
/// client refuses the response.
pub fn write_api_versions(
    out: &mut BytesMut,
    correlation_id: i32,
    error: ErrorCode,
    keys: &[ApiVersionKey],
    platform_version: &str,
) -> usize {
    let frame = ResponseFrame::begin(out, correlation_id);
    error.put(frame.out, "", 0);
    frame.out.put_u32(count(keys.len()));
    for key in keys {
        // Fluvio types the key as i16 here; keys above i16::MAX do not exist.
        frame.out.put_u16(key.api_key);
        frame.out.put_i16(key.min_version);
        frame.out.put_i16(key.max_version);
    }
    put_str(frame.out, platform_version);
    frame.finish()
}
