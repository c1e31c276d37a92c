//! # mg-wire: Fluvio's wire format, read in place
//!
//! Zero-copy views over received frames and byte-exact response encoders for
//! the parts of the Fluvio 0.50 SPU protocol that sit on the produce hot path.
//!
//! Map of the crate, in the order data flows through it:
//!
//! - [`header`]: the frame size prefix ([`frame_size`]) and the request header
//!   ([`RequestHeader`]) shared by every API.
//! - [`produce`]: [`ProduceRequest`], a validated view of a Produce body.
//!   Iterating its topics and partition entries allocates nothing; each entry's
//!   records are a range of the frame ([`Records`]), never decoded or copied.
//! - `smartmodule` (private): walks the smartmodule tail at the request's version.
//! - [`response`]: [`ProduceResponseWriter`] and [`write_api_versions`], which
//!   stream responses into a `BytesMut`, and the [`ErrorCode`] values the
//!   guard and storage answer with.
//! - [`error`]: [`WireError`], one variant per way a frame can be malformed.
//!
//! Invariants:
//! - No input can make this crate panic or read out of bounds: every read is
//!   checked ([`reader`](crate) is the only place that indexes the frame).
//! - A view exists only for a body that was walked to its last byte; views
//!   re-read the same immutable `Bytes`, so iterating them cannot fail.
//! - That walk runs once, with failures that carry no detail, so the hot
//!   path is plain branches; only a malformed frame is walked a second time,
//!   to name its [`WireError`] (see `reader`).
//!
//! Every layout claim is tested against `fluvio-spu-schema` 0.50.1 in
//! `tests/differential.rs`; a fuzz target lives in `fuzz/`.

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod produce;
mod reader;
pub mod response;
mod smartmodule;

pub use error::{Field, WireError};
pub use header::{DEFAULT_MAX_FRAME, RequestHeader, frame_size};
pub use produce::{
    Entries, Isolation, PRODUCE_API_KEY, PRODUCE_MAX_VERSION, PRODUCE_MIN_VERSION, PartitionEntry,
    ProduceRequest, Records, Topic, Topics,
};
pub use response::{
    ApiVersionKey, ErrorCode, PRODUCE_VERSIONS, ProduceResponseWriter, ResponseFrame,
    write_api_versions,
};
