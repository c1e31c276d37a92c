//! What a mirror role lets clients do.
//!
//! Data in a mirror topic flows one way. The side that receives mirrored data
//! must not also take writes from local producers, or the two copies diverge:
//!
//! | role                                   | flag          | client produce |
//! |----------------------------------------|---------------|----------------|
//! | no mirror                              |               | open           |
//! | Home (to-home topic, "from-remote")    | `source=false`| refused, 11003 |
//! | Home (home-to-remote, "to-remote")     | `source=true` | open           |
//! | Remote (to-home topic, "to-home")      | `target=false`| open           |
//! | Remote (home-to-remote, "from-home")   | `target=true` | refused, 11006 |

use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;

/// Whether local producers may write to a partition, given its mirror role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProducePolicy {
    /// Producers may write.
    Open,
    /// The home side of a to-home mirror: data arrives only from the remote.
    MirroredFromRemote,
    /// The remote side of a home-to-remote mirror: data arrives only from home.
    MirroredFromHome,
}

impl ProducePolicy {
    /// The policy for a partition with this mirror config.
    pub fn of(mirror: Option<&PartitionMirrorConfig>) -> Self {
        match mirror {
            None => ProducePolicy::Open,
            Some(PartitionMirrorConfig::Home(home)) if !home.source => {
                ProducePolicy::MirroredFromRemote
            }
            Some(PartitionMirrorConfig::Remote(remote)) if remote.target => {
                ProducePolicy::MirroredFromHome
            }
            Some(_) => ProducePolicy::Open,
        }
    }

    /// Whether local producers may write.
    pub fn is_open(self) -> bool {
        self == ProducePolicy::Open
    }
}
