//! Typed decoding errors.
//!
//! Every way a frame can be malformed has its own variant, so a server can
//! log a precise reason and a test can assert on it. None of them carries a
//! copy of the input: they are cheap to build on a hot path under attack.

use std::fmt;

/// The wire field a [`WireError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The i32 size prefix of a frame.
    FrameSize,
    /// `RequestHeader.api_key`.
    ApiKey,
    /// `RequestHeader.api_version`.
    ApiVersion,
    /// `RequestHeader.correlation_id`.
    CorrelationId,
    /// `RequestHeader.client_id`.
    ClientId,
    /// `ProduceRequest.transactional_id`.
    TransactionalId,
    /// `ProduceRequest.isolation` (acks).
    Acks,
    /// `ProduceRequest.timeout`.
    Timeout,
    /// The topic count of a ProduceRequest.
    TopicCount,
    /// A topic name.
    TopicName,
    /// The partition-entry count of a topic.
    PartitionCount,
    /// `PartitionProduceData.partition_index`.
    PartitionIndex,
    /// The length-prefixed record set of a partition entry.
    Records,
    /// The smartmodule invocation count.
    SmartModuleCount,
    /// A field inside a smartmodule invocation.
    SmartModule,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::FrameSize => "frame size",
            Field::ApiKey => "api_key",
            Field::ApiVersion => "api_version",
            Field::CorrelationId => "correlation_id",
            Field::ClientId => "client_id",
            Field::TransactionalId => "transactional_id",
            Field::Acks => "acks",
            Field::Timeout => "timeout",
            Field::TopicCount => "topic count",
            Field::TopicName => "topic name",
            Field::PartitionCount => "partition count",
            Field::PartitionIndex => "partition index",
            Field::Records => "records",
            Field::SmartModuleCount => "smartmodule count",
            Field::SmartModule => "smartmodule invocation",
        })
    }
}

/// Why a frame could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame ended inside a fixed-size field.
    #[error("truncated {field}: need {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: Field,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A length prefix points past the end of the frame.
    #[error("{field} length {len} exceeds the {available} bytes left in the frame")]
    LengthOutOfBounds {
        /// The length-prefixed field.
        field: Field,
        /// The declared length.
        len: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A length or count prefix is negative.
    #[error("negative {field} length {len}")]
    NegativeLength {
        /// The length-prefixed field.
        field: Field,
        /// The declared (negative) length.
        len: i32,
    },
    /// The produce timeout is negative.
    #[error("negative timeout of {0} ms")]
    NegativeTimeout(i32),
    /// A string field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string field.
        field: Field,
    },
    /// An enum or option tag has a value the protocol does not define.
    #[error("invalid {field} tag {tag}")]
    InvalidTag {
        /// The tagged field.
        field: Field,
        /// The tag found.
        tag: u8,
    },
    /// The frame carries another API than the one being decoded.
    #[error("unexpected api key {found}, expected {expected}")]
    UnexpectedApiKey {
        /// The key the decoder handles.
        expected: u16,
        /// The key in the header.
        found: u16,
    },
    /// The api_version is outside the range this decoder serves.
    #[error("unsupported api_version {version} for api key {api_key}")]
    UnsupportedVersion {
        /// The request's api key.
        api_key: u16,
        /// The version in the header.
        version: i16,
    },
    /// Bytes remain after the last field of the body.
    #[error("{count} trailing bytes after the request body")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// The frame size prefix is over the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The declared frame size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The frame size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeFrameSize(i32),
}
