//! The order in which one store's syncs reach the disk.
//!
//! Why: a sync ends in a device cache flush, and on a disk with a write-back
//! cache and no FUA (the development machine's virtual disk) that flush, and
//! the small write before it, wait for every write the device already
//! holds. A 100-byte commit issued while eight big partitions sync a MiB
//! each waited for all of them: 30-80x its idle latency, measured on the
//! disk alone with `cargo bench --bench spu_load`.
//!
//! So a big sync does not hand the device its whole unsynced range at once.
//! It writes it out in chunks of [`CHUNK_BYTES`] (`sync_file_range`, which
//! writes without flushing), one chunk at a time across the store, and ends
//! with an ordinary sync (a *flush*), by then short. Flushes, small commits
//! included, run side by side, but never beside a chunk. Turns alternate:
//! once a chunk waits, flushes already running finish, a chunk goes, then
//! every flush that waited meanwhile, then the next chunk. So a small
//! commit waits for at most one chunk, and big writers are never starved.
//! The store's writeback, which nobody waits for, writes its whole range
//! out as one chunk: paced 128 KiB a turn it slowed acks = 1 producers.
//!
//! Durability is unchanged: what a commit acknowledges is always covered by
//! a full `fdatasync` of the file (chunk writes only move the data to the
//! device earlier; they promise nothing).

use std::sync::{Condvar, Mutex, MutexGuard};

/// Unsynced bytes a sync writes out per chunk; a sync with at most this
/// many runs as a flush alone. Chosen on the development machine's disk
/// (`cargo bench --bench spu_load`): 128 KiB took about 0.15 ms to write.
pub const CHUNK_BYTES: u64 = 128 << 10;

/// Whose turn it is at the disk.
#[derive(Debug, Default)]
pub(crate) struct SyncScheduler {
    turns: Mutex<Turns>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Turns {
    /// A chunk is being written.
    writing: bool,
    /// Chunks waiting for their turn.
    chunks_waiting: usize,
    /// Flushes running.
    flushing: usize,
    /// Flushes waiting for their turn.
    flushes_waiting: usize,
    /// Flushes that may still start before the next chunk, though a chunk
    /// waits: those that waited through the last chunk.
    flush_grants: usize,
}

/// A turn at the disk, given back when dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    scheduler: &'a SyncScheduler,
    chunk: bool,
}

impl SyncScheduler {
    fn lock(&self) -> MutexGuard<'_, Turns> {
        // The state is a few counters updated whole under the lock.
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn to flush: no chunk is being written, and either
    /// none waits or this flush waited through the last one.
    pub(crate) fn flush(&self) -> Turn<'_> {
        let mut turns = self.lock();
        turns.flushes_waiting += 1;
        while turns.writing || (turns.chunks_waiting > 0 && turns.flush_grants == 0) {
            turns = self.changed.wait(turns).unwrap_or_else(|p| p.into_inner());
        }
        turns.flushes_waiting -= 1;
        turns.flush_grants = turns.flush_grants.saturating_sub(1);
        turns.flushing += 1;
        Turn {
            scheduler: self,
            chunk: false,
        }
    }

    /// Waits for a turn to write a chunk: nothing else at the disk, and
    /// every flush granted a turn has taken it.
    pub(crate) fn chunk(&self) -> Turn<'_> {
        let mut turns = self.lock();
        turns.chunks_waiting += 1;
        while turns.writing || turns.flushing > 0 || turns.flush_grants > 0 {
            turns = self.changed.wait(turns).unwrap_or_else(|p| p.into_inner());
        }
        turns.chunks_waiting -= 1;
        turns.writing = true;
        Turn {
            scheduler: self,
            chunk: true,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.scheduler.lock();
        if self.chunk {
            turns.writing = false;
            // Everyone who waited through this chunk flushes before the next.
            turns.flush_grants = turns.flushes_waiting;
        } else {
            turns.flushing -= 1;
        }
        drop(turns);
        self.scheduler.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    /// A thread that takes a turn (a chunk if `chunk`) and, holding it,
    /// sends `label`.
    fn take_turn(
        scheduler: &Arc<SyncScheduler>,
        order: &mpsc::Sender<&'static str>,
        chunk: bool,
        label: &'static str,
    ) -> std::thread::JoinHandle<()> {
        let (scheduler, order) = (Arc::clone(scheduler), order.clone());
        std::thread::spawn(move || {
            let _turn = if chunk {
                scheduler.chunk()
            } else {
                scheduler.flush()
            };
            order.send(label).unwrap();
        })
    }

    /// Waits until the scheduler's state satisfies `ready`.
    fn await_state(scheduler: &SyncScheduler, ready: impl Fn(&Turns) -> bool) {
        let mut turns = scheduler.lock();
        while !ready(&turns) {
            turns = scheduler
                .changed
                .wait_timeout(turns, std::time::Duration::from_millis(10))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    #[test]
    fn flushes_run_side_by_side_when_no_chunk_waits() {
        let scheduler = SyncScheduler::default();
        let a = scheduler.flush();
        let b = scheduler.flush();
        assert_eq!(scheduler.lock().flushing, 2);
        drop((a, b));
        assert_eq!(scheduler.lock().flushing, 0);
    }

    #[test]
    fn a_flush_waits_for_the_chunk_being_written_and_goes_before_the_next() {
        let scheduler = Arc::new(SyncScheduler::default());
        let (order, events) = mpsc::channel();
        let first = scheduler.chunk();
        // A flush and a second chunk arrive while the first chunk is written.
        let flush = take_turn(&scheduler, &order, false, "flush");
        await_state(&scheduler, |t| t.flushes_waiting == 1);
        let second = take_turn(&scheduler, &order, true, "chunk");
        await_state(&scheduler, |t| t.chunks_waiting == 1);
        assert!(events.try_recv().is_err(), "nothing runs beside a chunk");
        drop(first);
        flush.join().unwrap();
        second.join().unwrap();
        let seen: Vec<_> = events.try_iter().collect();
        assert_eq!(seen, ["flush", "chunk"]);
    }

    #[test]
    fn a_waiting_chunk_goes_before_flushes_that_came_after_it() {
        let scheduler = Arc::new(SyncScheduler::default());
        let (order, events) = mpsc::channel();
        let running = scheduler.flush();
        let chunk = take_turn(&scheduler, &order, true, "chunk");
        await_state(&scheduler, |t| t.chunks_waiting == 1);
        // A flush arriving now waits: the chunk is owed the next turn.
        let late = take_turn(&scheduler, &order, false, "late flush");
        await_state(&scheduler, |t| t.flushes_waiting == 1);
        drop(running);
        chunk.join().unwrap();
        late.join().unwrap();
        let seen: Vec<_> = events.try_iter().collect();
        assert_eq!(seen, ["chunk", "late flush"]);
    }
}
