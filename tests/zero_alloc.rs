//! Judging a request allocates nothing.
//!
//! A counting global allocator counts allocations made on this test's thread
//! while it is armed. Frames are built the way the SPU's codec hands them
//! over (split off a `BytesMut`), so slicing records out of them only bumps a
//! reference count.

#![allow(unsafe_code)] // a global allocator cannot be written without it

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mg_guard::{Guard, Verdict};
use mg_roles::{ReplicaRole, RoleTable, RoleUpdate};
use mg_testkit::{ProduceSpec, home, remote};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is a counter in a const-initialised thread local, which
// itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let result = f();
    ARMED.with(|a| a.set(false));
    (result, COUNT.with(|c| c.get()))
}

/// A frame as the SPU codec produces it: split off the read buffer.
fn as_received(frame: &[u8]) -> Bytes {
    let mut read_buf = BytesMut::with_capacity(frame.len() + 64);
    read_buf.extend_from_slice(frame);
    read_buf.split_to(frame.len()).freeze()
}

fn guard() -> Guard {
    let table = Arc::new(RoleTable::new(1));
    let mut all = Vec::new();
    for p in 0..16 {
        all.push(ReplicaRole {
            topic: "plain".into(),
            partition: p,
            leader: 1,
            mirror: None,
        });
        all.push(ReplicaRole {
            topic: "to-home".into(),
            partition: p,
            leader: 1,
            mirror: Some(home("edge", false)),
        });
        all.push(ReplicaRole {
            topic: "from-home".into(),
            partition: p,
            leader: 1,
            mirror: Some(remote("home", true)),
        });
    }
    table.apply(RoleUpdate::Sync { epoch: 1, all });
    Guard::new(table)
}

fn spec(topics: &[&str], partitions: u32) -> ProduceSpec {
    ProduceSpec {
        timeout_ms: 1500,
        topics: topics
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    (0..partitions)
                        .map(|p| (p, vec![vec![vec![7u8; 100]]]))
                        .collect(),
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// Judges `frame`, walks every verdict, and takes an owned handle on every
/// accepted record set; returns (accepted, rejected).
fn judge_all(guard: &mut Guard, frame: &Bytes) -> (usize, usize) {
    let judgement = guard.judge(frame).expect("valid frame");
    let (mut accepted, mut rejected) = (0, 0);
    for v in judgement.verdicts() {
        match v.verdict {
            Verdict::Accept(records) => {
                let owned = records.to_bytes();
                accepted += usize::from(!owned.is_empty());
            }
            Verdict::Reject(_) => rejected += 1,
        }
    }
    (accepted, rejected)
}

#[test]
fn judging_allocates_nothing() {
    let mut guard = guard();
    let one = as_received(&spec(&["plain"], 1).frame(25, 1));
    let many = as_received(&spec(&["plain", "to-home", "from-home", "unknown"], 16).frame(25, 2));

    // Warm-up: arc-swap registers this thread on its first load.
    judge_all(&mut guard, &one);

    let (counts, allocs) = allocations(|| judge_all(&mut guard, &one));
    assert_eq!(counts, (1, 0));
    assert_eq!(allocs, 0, "1 topic x 1 partition");

    let (counts, allocs) = allocations(|| judge_all(&mut guard, &many));
    assert_eq!(counts, (16, 48));
    assert_eq!(allocs, 0, "4 topics x 16 partitions");
}

#[test]
fn answering_into_a_sized_buffer_allocates_nothing() {
    let mut guard = guard();
    let many = as_received(&spec(&["plain", "to-home", "from-home", "unknown"], 16).frame(25, 2));
    judge_all(&mut guard, &many);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let outcomes: Vec<_> = (0..16).map(Ok).collect();
    let (result, allocs) = allocations(|| {
        let judgement = guard.judge(&many).expect("valid frame");
        judgement.respond(outcomes.iter().copied(), &mut out)
    });
    assert!(result.is_ok());
    assert_eq!(allocs, 0);
    assert!(out.len() > 64 * 30, "one entry per partition was written");
}

/// The counter works: a deliberate allocation is seen.
#[test]
fn the_counter_sees_allocations() {
    let (v, allocs) = allocations(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert_eq!(allocs, 1);
}
