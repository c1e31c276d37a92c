//! Counters per outcome, shared between the guard and whoever reports them.
//!
//! The hot path counts into locals while it answers a request and adds them
//! to these atomics once per request, so a request of 256 entries costs a
//! handful of uncontended atomic adds, not 256.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mg_wire::ErrorCode;

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    not_leader: AtomicU64,
    from_home: AtomicU64,
    remote_target: AtomicU64,
    storage_failed: AtomicU64,
    malformed: AtomicU64,
}

/// A cheap, clonable handle on the guard's counters.
#[derive(Clone, Debug, Default)]
pub struct GuardStats(Arc<Counters>);

/// A point-in-time copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Entries the guard accepted (whatever storage then made of them).
    pub accepted: u64,
    /// Entries refused with NotLeaderForPartition (6).
    pub not_leader: u64,
    /// Entries refused with MirrorProduceFromHome (11003).
    pub from_home: u64,
    /// Entries refused with MirrorProduceFromRemoteNotAllowed (11006).
    pub remote_target: u64,
    /// Accepted entries that storage then failed.
    pub storage_failed: u64,
    /// Frames that could not be decoded.
    pub malformed: u64,
}

impl StatsSnapshot {
    /// Rejections by the code they were answered with.
    pub fn rejected_by_code(&self) -> [(ErrorCode, u64); 3] {
        [
            (ErrorCode::NotLeaderForPartition, self.not_leader),
            (ErrorCode::MirrorProduceFromHome, self.from_home),
            (
                ErrorCode::MirrorProduceFromRemoteNotAllowed,
                self.remote_target,
            ),
        ]
    }
}

/// Per-request tallies, flushed into [`GuardStats`] once.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) accepted: u64,
    pub(crate) not_leader: u64,
    pub(crate) from_home: u64,
    pub(crate) remote_target: u64,
    pub(crate) storage_failed: u64,
}

impl Tally {
    pub(crate) fn reject(&mut self, code: ErrorCode) {
        match code {
            ErrorCode::MirrorProduceFromHome => self.from_home += 1,
            ErrorCode::MirrorProduceFromRemoteNotAllowed => self.remote_target += 1,
            // `decide` refuses with no other code than these three.
            _ => self.not_leader += 1,
        }
    }
}

impl GuardStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.0;
        StatsSnapshot {
            accepted: c.accepted.load(Ordering::Relaxed),
            not_leader: c.not_leader.load(Ordering::Relaxed),
            from_home: c.from_home.load(Ordering::Relaxed),
            remote_target: c.remote_target.load(Ordering::Relaxed),
            storage_failed: c.storage_failed.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn malformed(&self) {
        self.0.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, tally: &Tally) {
        let c = &self.0;
        for (counter, n) in [
            (&c.accepted, tally.accepted),
            (&c.not_leader, tally.not_leader),
            (&c.from_home, tally.from_home),
            (&c.remote_target, tally.remote_target),
            (&c.storage_failed, tally.storage_failed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}
