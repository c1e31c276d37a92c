//! Mirroring between clusters, on the SC: Fluvio 0.50's `MirrorConnect`
//! stream (admin key 1005) on the public port.
//!
//! ```text
//! remote SC: remote::run   dial -> ApiVersions -> ObjectMirroringRequest(MirrorConnect{remote_id})
//!                          <- MirroringStatusResponse (the topics for this remote), again on change
//!                          -> create / update / delete the local copies of that home's topics
//! home SC:   home::serve   registered? -> stream the mirror topics that list the remote, each with
//!                          the SPU leading its partition; end when the remote is unregistered
//! ```
//!
//! Both sides record the SC's side of the pairing ([`Cluster::mirror_status_from_sc`]);
//! the SPUs report theirs over the control plane.
//!
//! [`Cluster::mirror_status_from_sc`]: crate::Cluster::mirror_status_from_sc

pub mod home;
pub mod remote;

use std::time::{SystemTime, UNIX_EPOCH};

use fluvio_controlplane_metadata::mirror::{ConnectionStatus, MirrorPairStatus, MirrorStatus};

/// The admin key of `ObjectMirroringRequest`.
pub const MIRRORING_KEY: u16 = 1005;
/// Who may open a MirrorConnect stream on the public port.
#[derive(Clone, Debug, Default)]
pub struct MirroringAccess {
    /// The home's TLS side: remotes connect with a certificate of the home
    /// CA, and their id is its common name.
    pub tls: Option<mg_transport::tls::TlsServer>,
    /// `--insecure-mirroring`: plaintext MirrorConnect is let in, the
    /// remote's id taken as claimed (a lab with a Fluvio edge without TLS).
    pub insecure: bool,
    /// The home's TLS directory: which certificate each remote may present
    /// (`remote export` records it; `--rotate` keeps only the newest).
    pub tls_dir: Option<std::path::PathBuf>,
    /// Where refusals and open streams are counted.
    pub metrics: std::sync::Arc<crate::metrics::ScMetrics>,
}

/// The client id our remote SC sends its MirrorConnect with.
pub const CLIENT_ID: &str = "mirror-guard sc";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The SC's side of a pairing, now.
fn sc_status(pairing: MirrorPairStatus, online: bool) -> MirrorStatus {
    let connection = if online {
        ConnectionStatus::Online
    } else {
        ConnectionStatus::Offline
    };
    MirrorStatus::new(pairing, connection, now_ms())
}
