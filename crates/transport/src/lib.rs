//! # mg-transport: Fluvio's framing on TCP, for every server and client here
//!
//! Both planes speak the same envelope: an i32 size prefix, a request header
//! (api key, version, correlation id, client id), a body encoded at the
//! header's version; responses carry the correlation id, then the body. This
//! crate owns that envelope and the sockets under it, so the SPU, the SC and
//! the SPU's control client never write their own.
//!
//! Map of the crate:
//! - [`frame`]: [`FrameReader`], frames off a byte stream: the size checked
//!   before any body byte is buffered, and a read deadline on partial frames
//!   so a peer that stalls mid-frame cannot hold its connection forever.
//! - [`envelope`]: the request header (borrowed, from `mg-wire`),
//!   [`decode_body`] (Fluvio's decoder, every byte used), [`encode_request`],
//!   [`write_response`] / [`encode_response`].
//! - [`server`]: [`serve`], the one accept loop: a connection limit, each
//!   connection a tracked task, and a bounded graceful drain at shutdown;
//!   [`start`] binds and runs it as a task, a [`RunningServer`].
//! - [`dial`]: [`dial()`], the one place that connects out, and [`Backoff`]
//!   for reconnecting.
//! - [`shutdown`]: [`Shutdown`] and [`ShutdownSignal`], one trigger seen by
//!   every task.
//! - [`metrics_http`]: `/metrics` over HTTP for the SPU and the SC.
//! - [`tls`]: TLS for the mirror channels: [`tls::accept`] tells a TLS
//!   connection from a plaintext one by its first byte on the same port and
//!   proves the client's [`tls::Identity`]; [`tls::TlsClient`] dials with a
//!   client certificate.

pub mod dial;
pub mod envelope;
pub mod frame;
pub mod metrics_http;
pub mod server;
pub mod shutdown;
pub mod tls;

pub use dial::{Backoff, dial, dial_endpoint};
pub use envelope::{
    BodyError, EncodeError, RequestHeader, decode_body, encode_request, encode_response,
    write_response,
};
pub use frame::{FrameError, FrameLimits, FrameReader};
pub use server::{RunningServer, ServerLimits, serve, start};
pub use shutdown::{Shutdown, ShutdownSignal};
