//! Operating mirrors: mirror-guard's own extension of the protocols, spoken
//! only between mirror-guard parts, each behind a version or key that a
//! Fluvio 0.50 peer never sends or is never sent.
//!
//! ```text
//! SC -> SPU   Replica.control    (UpdateReplica v19: SPUs that registered at v2)
//!             the partition's mirror epoch and whether its link is paused
//! SPU -> SC   LrsRequest.mirror  (UpdateLrs v2: after the SC pushed v19)
//!             the epoch fenced at, and the link: connected, lag, bytes, last seen
//! CLI -> SC   MirrorOperate (7001)  promote | failover | pause | resume
//!             MirrorReport  (7002)  every mirror partition's state and link
//! SC <-> SC   MirrorStates  (7003)  on a MirrorConnect stream: the state of
//!             the partitions each side receives, so the sender shows it
//! ```
//!
//! The epoch is the fence. Every role change that must stop mirrored
//! appends (promote, failover, pause) raises it; a receiving SPU appends a
//! link's records only while the link's epoch is the partition's, checked
//! under the partition's log lock, and reports the epoch it fenced at. The
//! SC answers an operator only once the leader reported the new epoch.

use fluvio_protocol::{Decoder, Encoder};

/// The UpdateReplica version that carries [`MirrorControl`].
pub const UPDATE_REPLICA_CONTROL_VERSION: i16 = 19;
/// The RegisterSpu version with which an SPU declares that it reads
/// UpdateReplica at [`UPDATE_REPLICA_CONTROL_VERSION`].
pub const REGISTER_WITH_CONTROL_VERSION: i16 = 2;
/// The UpdateLrs version that carries [`MirrorLinkReport`]s.
pub const UPDATE_LRS_MIRROR_VERSION: i16 = 2;

/// CLI to SC: promote, fail over, pause or resume a mirror partition.
pub const MIRROR_OPERATE_KEY: u16 = 7001;
/// CLI to SC: the state and link of every mirror partition.
pub const MIRROR_REPORT_KEY: u16 = 7002;
/// SC to SC, on a MirrorConnect stream: the receiving side's states.
pub const MIRROR_STATES_KEY: u16 = 7003;
/// The correlation id of the home's [`MirrorStates`] frames on a stream
/// (the stream's own responses carry the MirrorConnect's).
pub const MIRROR_STATES_CORRELATION: i32 = 7003;

/// A partition's mirror control, as the SC pushes it to its SPUs.
#[derive(Encoder, Decoder, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorControl {
    /// The mirror epoch: links admitted at an older one append nothing more.
    pub epoch: u32,
    /// No link runs for this partition: records wait at the sender.
    pub paused: bool,
    /// Mirroring ended here (promoted, failed over, or ended by the
    /// receiving side): the role is kept only to name what is refused, and
    /// the partition is an ordinary one. Fluvio SPUs are sent no role.
    pub ended: bool,
}

/// One led mirror partition's link, as its SPU reports it.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorLinkReport {
    /// The epoch this SPU fenced the partition at.
    pub epoch: u32,
    /// Whether a link is up now.
    pub connected: bool,
    /// Records the receiver is behind the sender, as last known (-1: unknown).
    pub lag: i64,
    /// Records mirrored over this SPU's links since it started.
    pub records: u64,
    /// Bytes mirrored over this SPU's links since it started.
    pub bytes: u64,
    /// When the peer was last heard, ms since the Unix epoch (0: never).
    pub last_seen_ms: u64,
    /// Mirrored appends refused: fenced, misaligned or corrupt.
    pub refused: u64,
}

/// What an operator does to a mirror partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorAction {
    /// Wait until the partition is in sync, then end mirroring: it becomes
    /// an ordinary writable partition.
    Promote,
    /// End mirroring at once (the sender is gone).
    Failover,
    /// Stop the link; records wait at the sender.
    Pause,
    /// Start the link again; it catches up from the receiver's log end.
    Resume,
}

impl MirrorAction {
    /// The action's name on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Failover => "failover",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    /// The action of a name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Promote, Self::Failover, Self::Pause, Self::Resume]
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// CLI to SC: act on the mirror partitions of `topic` this cluster receives.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorOperateRequest {
    /// The topic.
    pub topic: String,
    /// Only the partition of this remote (on a home); all when empty.
    pub remote: String,
    /// A [`MirrorAction`] name.
    pub action: String,
    /// How long to wait for the partition to be in sync (promote) and for
    /// the leaders to confirm the fence, in ms.
    pub timeout_ms: u64,
}

/// The SC's answer to [`MirrorOperateRequest`].
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorOperateResponse {
    /// Why the action failed or is incomplete; `None`: done and fenced.
    pub error: Option<String>,
    /// The partitions acted on, as they stand now.
    pub partitions: Vec<MirrorPartitionRow>,
}

/// CLI to SC: list every mirror partition (no fields).
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorReportRequest {}

/// The SC's answer to [`MirrorReportRequest`].
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorReportResponse {
    /// One row per mirror partition.
    pub partitions: Vec<MirrorPartitionRow>,
}

/// One mirror partition, as an operator sees it.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorPartitionRow {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The other cluster: the remote's id (on a home), the home's (on a remote).
    pub peer: String,
    /// `receives` or `sends`.
    pub direction: String,
    /// active, paused, paused-by-peer, promoted, failed-over, ended.
    pub state: String,
    /// The partition's mirror epoch.
    pub epoch: u32,
    /// The leading SPU.
    pub leader: i32,
    /// The leader's last report of the link, if it sent one.
    pub link: Option<MirrorLinkReport>,
}

/// SC to SC: the state of each partition the sending side receives from
/// the other.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct MirrorStates {
    /// One entry per topic mirrored with the peer.
    pub topics: Vec<TopicMirrorState>,
}

/// One topic's receiving state.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct TopicMirrorState {
    /// The topic.
    pub topic: String,
    /// active, paused, promoted or failed-over.
    pub state: String,
    /// The receiving partition's epoch.
    pub epoch: u32,
}
