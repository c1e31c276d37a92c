//! Where a client command finds the SC: `--sc`, or `MIRROR_GUARD_SC`.

use clap::Args;

/// Where the cluster's SC is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The SC's public endpoint; with SC high availability every SC's,
    /// comma-separated (the active one answers).
    #[arg(long, env = "MIRROR_GUARD_SC", default_value = "127.0.0.1:9003")]
    pub(crate) sc: String,
}
