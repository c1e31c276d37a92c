//! Api keys of the control plane.

/// The correlation id of every request on the control connection: nobody
/// answers them, so Fluvio sends 1 throughout.
pub const CORRELATION_ID: i32 = 1;

/// Requests the SPU sends to the SC (Fluvio's `InternalScKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ScKey {
    /// Registration, the first request on a connection (v0).
    RegisterSpu = 2000,
    /// Leader replica status, every 400 ms (v1).
    UpdateLrs = 2001,
    /// A leader replica was removed (v0).
    ReplicaRemoved = 2002,
    /// Mirror pairing status (v0).
    UpdateMirrorStat = 2003,
    /// Partition resolution, e.g. out of storage (v0).
    UpdatePartitionStat = 2004,
}

/// Requests the SC pushes to the SPU (Fluvio's `InternalSpuApi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum SpuKey {
    /// SPU specs (v0).
    UpdateSpu = 1001,
    /// Replicas and their mirror roles (v18).
    UpdateReplica = 1002,
    /// SmartModules (v10).
    UpdateSmartModule = 1003,
    /// Mirror (remote / home cluster) objects (v0).
    UpdateMirror = 1004,
}

impl ScKey {
    /// The key's number.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The key for a number, if it is one.
    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::RegisterSpu,
            Self::UpdateLrs,
            Self::ReplicaRemoved,
            Self::UpdateMirrorStat,
            Self::UpdatePartitionStat,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// The version Fluvio sends the request at.
    pub const fn default_version(self) -> i16 {
        match self {
            Self::UpdateLrs => 1,
            _ => 0,
        }
    }
}

impl SpuKey {
    /// The key's number.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The key for a number, if it is one.
    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::UpdateSpu,
            Self::UpdateReplica,
            Self::UpdateSmartModule,
            Self::UpdateMirror,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// The version Fluvio sends the request at.
    pub const fn default_version(self) -> i16 {
        match self {
            Self::UpdateReplica => UPDATE_REPLICA_VERSION,
            Self::UpdateSmartModule => 10,
            _ => 0,
        }
    }
}

/// The version of `UpdateReplicaRequest` that carries mirror direction flags.
pub const UPDATE_REPLICA_VERSION: i16 = 18;

/// The RegisterSpu version with which an SPU declares that it reads
/// `UpdateReplicaRequest` at [`UPDATE_REPLICA_VERSION`], mirror direction
/// flags included. The body is the same at every version, so a Fluvio SC
/// accepts it; Fluvio's own SPUs register at version 0.
pub const REGISTER_WITH_FLAGS_VERSION: i16 = 1;

/// The UpdateReplica version sent to SPUs that did not declare the flags:
/// the last one without them.
pub const UPDATE_REPLICA_WITHOUT_FLAGS: i16 = UPDATE_REPLICA_VERSION - 1;
