//! The control plane's request bodies, field for field as Fluvio encodes them.

use fluvio_controlplane_metadata::mirror::{MirrorSpec, MirrorStatus};
use fluvio_controlplane_metadata::partition::{
    PartitionMirrorConfig, PartitionResolution, ReplicaStatus,
};
use fluvio_controlplane_metadata::spu::SpuSpec;
use fluvio_controlplane_metadata::topic::{
    CleanupPolicy, CompressionAlgorithm, Deduplication, TopicStorageConfig,
};
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;
use fluvio_protocol::{Decoder, Encoder};

use crate::operate::{MirrorControl, MirrorLinkReport};

pub use fluvio_controlplane_metadata::message::{Message, MsgType};

/// The SPU's first request: "I am SPU `spu`".
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct RegisterSpuRequest {
    /// The SPU's id.
    pub spu: i32,
}

/// The SC's answer to registration (the only response on this connection).
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct RegisterSpuResponse {
    /// `None`, or `SpuRegisterationFailed` (1001).
    pub error_code: ErrorCode,
    /// Why registration failed.
    pub error_message: Option<String>,
}

/// An SC push: an epoch, then either a full sync (`all`) or `changes`.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct ControlPlaneRequest<S: Encoder + Decoder + Default + std::fmt::Debug> {
    /// The SC store's epoch for this state.
    pub epoch: i64,
    /// Incremental upserts and deletes (used when `all` is empty).
    pub changes: Vec<Message<S>>,
    /// Everything (a full sync: what is missing is deleted).
    pub all: Vec<S>,
}

impl<S: Encoder + Decoder + Default + std::fmt::Debug> ControlPlaneRequest<S> {
    /// A full sync.
    pub fn sync(epoch: i64, all: Vec<S>) -> Self {
        Self {
            epoch,
            changes: Vec::new(),
            all,
        }
    }

    /// Incremental changes.
    pub fn changes(epoch: i64, changes: Vec<Message<S>>) -> Self {
        Self {
            epoch,
            changes,
            all: Vec::new(),
        }
    }
}

/// One partition as the SC tells SPUs about it.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct Replica {
    /// Topic and partition.
    pub id: ReplicaKey,
    /// The leading SPU.
    pub leader: i32,
    /// Every SPU holding a replica, leader first.
    pub replicas: Vec<i32>,
    /// The partition's mirror role (direction flags at v18+ only).
    pub mirror: Option<PartitionMirrorConfig>,
    /// Whether the partition is being deleted.
    pub is_being_deleted: bool,
    /// Retention.
    pub cleanup_policy: Option<CleanupPolicy>,
    /// Segment and partition size limits.
    pub storage: Option<TopicStorageConfig>,
    /// The compression producers must use (`Any` by default).
    pub compression_type: CompressionAlgorithm,
    /// Topic deduplication.
    pub deduplication: Option<Deduplication>,
    /// Mirror epoch and pause (mirror-guard's extension, v19+; see
    /// [`crate::operate`]).
    #[fluvio(min_version = 19)]
    pub control: MirrorControl,
}

/// A mirror object (a registered remote, or the home a remote connects to).
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct Mirror {
    /// The object's name.
    pub name: String,
    /// What it is.
    pub spec: MirrorSpec,
}

/// SPU specs, pushed by the SC (v0).
pub type UpdateSpuRequest = ControlPlaneRequest<SpuSpec>;
/// Replicas, pushed by the SC (v18).
pub type UpdateReplicaRequest = ControlPlaneRequest<Replica>;
/// Mirror objects, pushed by the SC (v0).
pub type UpdateMirrorRequest = ControlPlaneRequest<Mirror>;

/// The SPU's report on the replicas it leads (v1), also its heartbeat.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct UpdateLrsRequest {
    /// One entry per led replica whose offsets changed.
    pub replicas: Vec<LrsRequest>,
    /// SmartModule counts (always zero here).
    pub stat: SpuStat,
}

/// One led replica's offsets.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct LrsRequest {
    /// The replica.
    pub id: ReplicaKey,
    /// The leader's offsets.
    pub leader: ReplicaStatus,
    /// Followers' offsets.
    pub replicas: Vec<ReplicaStatus>,
    /// Bytes stored.
    pub size: i64,
    /// The first offset held (v1+).
    #[fluvio(min_version = 1)]
    pub base_offset: i64,
    /// The mirror link of this partition (mirror-guard's extension, v2+;
    /// see [`crate::operate`]).
    #[fluvio(min_version = 2)]
    pub mirror: Option<MirrorLinkReport>,
}

/// SmartModule counts in a status report.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct SpuStat {
    /// SmartModules loaded.
    pub smartmodules_count: u32,
    /// Smart streams running.
    pub smart_streams_count: u32,
}

/// A leader replica was removed on the SPU.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct ReplicaRemovedRequest {
    /// The replica.
    pub id: ReplicaKey,
    /// Whether the removal is confirmed.
    pub confirm: bool,
}

/// Partition resolutions the SPU reports (e.g. out of storage).
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct UpdatePartitionStatRequest {
    /// One entry per partition.
    pub stats: Vec<PartitionStatRequest>,
}

/// One partition's resolution.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct PartitionStatRequest {
    /// The partition.
    pub replica_key: ReplicaKey,
    /// Its resolution.
    pub resolution: PartitionResolution,
}

/// Mirror pairing status the SPU reports.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct UpdateMirrorStatRequest {
    /// One entry per mirror.
    pub stats: Vec<MirrorStatRequest>,
}

/// One mirror's status.
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq)]
pub struct MirrorStatRequest {
    /// The mirror's name.
    pub mirror_id: String,
    /// Its status.
    pub status: MirrorStatus,
}
