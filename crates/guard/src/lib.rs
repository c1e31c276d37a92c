//! # mg-guard: judge every produce entry before storage
//!
//! The hot path, in one place. Data flows:
//!
//! ```text
//! frame (Bytes) ──► Guard::judge ──► Judgement ──► verdicts() ──► storage (accepted entries)
//!   mg-wire view      one snapshot        │                              │ outcomes
//!   + role snapshot   of the role table   └──────── respond(outcomes) ◄───┘
//!                                                  one response entry per request entry
//! ```
//!
//! - [`Guard`]: owns a handle on the [`RoleTable`](mg_roles::RoleTable) and
//!   the [`GuardStats`]; [`Guard::judge`] parses a Produce frame with
//!   `mg-wire` and pins one role snapshot for the whole request.
//! - [`Judgement`]: the parsed request plus that snapshot. [`Judgement::verdicts`]
//!   yields an [`EntryVerdict`] per partition entry, in request order;
//!   [`Judgement::respond`] merges storage outcomes for the accepted entries
//!   and writes the ProduceResponse.
//! - [`decide`]: the rule itself, for one entry.
//! - [`stats`]: counters per outcome behind a cheap, clonable handle.
//!
//! Judging allocates nothing and never reads inside a record set: an accepted
//! entry carries its records as a range of the frame, ready for storage.

mod judge;
pub mod stats;

pub use judge::{EntryVerdict, Guard, Judgement, RespondError, StoreOutcome, Verdicts};
pub use stats::{GuardStats, StatsSnapshot};

use mg_roles::{PartitionRoles, ProducePolicy, TopicRoles};
use mg_wire::{ErrorCode, PartitionEntry, Records};

/// What the guard decided for one partition entry.
#[derive(Clone, Debug)]
pub enum Verdict<'f> {
    /// The entry may be written; here are its records, still in the frame.
    Accept(Records<'f>),
    /// The entry is refused with this code and must not reach storage.
    Reject(ErrorCode),
}

impl Verdict<'_> {
    /// The code the entry is refused with, if it is.
    #[inline]
    pub fn rejection(&self) -> Option<ErrorCode> {
        match self {
            Verdict::Accept(_) => None,
            Verdict::Reject(code) => Some(*code),
        }
    }

    /// Whether the entry may be written.
    #[inline]
    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept(_))
    }
}

/// The rule for one entry, given the roles of its topic on this SPU.
///
/// 1. Not led here (topic or partition unknown): NotLeaderForPartition (6).
/// 2. Home side of a to-home mirror: MirrorProduceFromHome (11003).
/// 3. Remote target of a home-to-remote mirror: MirrorProduceFromRemoteNotAllowed (11006).
/// 4. Otherwise: accept.
///
/// This is Fluvio's order: leadership first, then `accept_traffic`.
#[inline(always)]
pub fn decide<'f>(topic: Option<&TopicRoles>, entry: PartitionEntry<'f>) -> Verdict<'f> {
    decide_in(topic.map_or(PartitionRoles::NONE, TopicRoles::roles), entry)
}

/// [`decide`] over a topic's partitions taken once for many entries.
#[inline(always)]
pub(crate) fn decide_in<'f>(roles: PartitionRoles<'_>, entry: PartitionEntry<'f>) -> Verdict<'f> {
    match roles.policy(entry.partition) {
        None => Verdict::Reject(ErrorCode::NotLeaderForPartition),
        Some(ProducePolicy::Open) => Verdict::Accept(entry.records),
        Some(ProducePolicy::MirroredFromRemote) => {
            Verdict::Reject(ErrorCode::MirrorProduceFromHome)
        }
        Some(ProducePolicy::MirroredFromHome) => {
            Verdict::Reject(ErrorCode::MirrorProduceFromRemoteNotAllowed)
        }
    }
}
