//! Mirroring between clusters, on the SPU: the channel records take from a
//! remote (edge) cluster's partition to its partition of the home's mirror
//! topic, or, for a home-to-remote topic, from the home to each remote.
//!
//! ```text
//! remote SPU (leads a Remote partition)            home SPU (leads the Home partition)
//! remote::run: dial -> ApiVersions -> StartMirror --> connection -> home::serve: admit
//!   to-home:       link::send     ---SyncRecords-->   link::receive (append at LEO)
//!                                 <--UpdateHomeOffset
//!   home-to-remote: link::receive <--SyncRecords---   link::send
//!                                 ---UpdateEdgeOffset->
//! ```
//!
//! Map: [`protocol`] is the wire; [`directory`] the mirror objects the SC
//! pushes and the pairing reported back; [`controls`] each partition's
//! mirror epoch (the fence) and pause; `link` the two loops every link
//! runs once its handshake is done; `home` the accepting side; `remote` the
//! dialing side (one link per led remote partition, redialed with backoff).
//!
//! Both sides of a link run over mutual TLS (`mg_transport::tls`): the
//! remote dials with its certificate, the home binds the id it claims to
//! the certificate's.
//!
//! Mirrored records reach storage only through `link::receive`, which
//! appends through the storage API keeping the sender's offsets; they never
//! pass the produce path, so the guard neither sees nor blocks them, and a
//! client can never write a mirror partition.

pub mod controls;
pub mod directory;
pub(crate) mod home;
mod link;
pub mod protocol;
pub(crate) mod remote;

use std::sync::Arc;

use mg_roles::RoleTable;
use tokio::sync::watch;

use crate::changes::{Offsets, Unreported};
use crate::disk::Disk;
use crate::metrics::Metrics;
pub use controls::Controls;
pub use directory::{MirrorDirectory, Pairing};

/// What mirror links touch.
#[derive(Clone, Debug)]
pub(crate) struct MirrorHandles {
    pub(crate) roles: Arc<RoleTable>,
    pub(crate) disk: Disk,
    pub(crate) offsets: Arc<Offsets>,
    pub(crate) unreported: Arc<Unreported>,
    pub(crate) metrics: Arc<Metrics>,
    /// The mirror objects, as the SC last pushed them.
    pub(crate) directory: watch::Receiver<Arc<MirrorDirectory>>,
    /// Bumped whenever the role table changes.
    pub(crate) roles_changed: watch::Receiver<u64>,
    pub(crate) pairing: Arc<Pairing>,
    /// Each led partition's mirror epoch and pause, as the SC pushed them.
    pub(crate) controls: Arc<Controls>,
    /// `--insecure-mirroring`: mirror traffic without TLS is let in, the
    /// remote's id taken as claimed (a lab with a Fluvio edge without TLS).
    pub(crate) insecure: bool,
    /// The home's TLS directory: which certificate each remote may present.
    pub(crate) tls_dir: Option<std::path::PathBuf>,
}

/// Waits for the next change; never, if the sender is gone (nothing will
/// change any more).
async fn changed<T>(receiver: &mut watch::Receiver<T>) {
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
