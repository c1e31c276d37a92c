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
//! Taking turns bounds what a small commit waits for, not how slow the
//! device is: beside eight big writers a single chunk took up to 10 ms and
//! a small `fdatasync` as long, the device's cache full of their data. So,
//! opt-in ([`Store::set_flush_target`](crate::Store::set_flush_target)),
//! the scheduler also paces chunks: it times small flushes against a
//! target and holds a pause between two chunks, grown while more than one
//! small flush in a hundred runs late and shrunk while they do not (and
//! dropped when no small flush has run for a while: big syncs alone are
//! never paced). Small flushes never wait for the pause; big syncs lose
//! bandwidth.
//!
//! Durability is unchanged: what a commit acknowledges is always covered by
//! a full `fdatasync` of the file (chunk writes only move the data to the
//! device earlier; they promise nothing).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Unsynced bytes a sync writes out per chunk; a sync with at most this
/// many runs as a flush alone. Chosen on the development machine's disk
/// (`cargo bench --bench spu_load`): 128 KiB took about 0.15 ms to write.
pub const CHUNK_BYTES: u64 = 128 << 10;

/// The shortest pause between two chunks once small flushes run late.
const MIN_GAP: Duration = Duration::from_micros(100);
/// The longest pause between two chunks: big writers keep at least one
/// chunk per this interval, however late small flushes run.
const MAX_GAP: Duration = Duration::from_millis(20);

/// Small flushes the pacing looks at before it changes the gap.
const WINDOW: u32 = 100;
/// With no small flush for this long there is nothing to protect: the
/// pause ends, and the next small flushes start a new window.
const QUIET: Duration = Duration::from_millis(100);

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
    /// The pause between the end of one chunk and the start of the next,
    /// grown while small flushes run past the target, shrunk while they
    /// meet it.
    gap: Duration,
    /// When the next chunk may start: the last chunk's end plus the gap.
    next_chunk_at: Option<Instant>,
    /// How long a small flush (its wait for a turn included) may take
    /// before chunks are paced; `None` never paces them.
    target: Option<Duration>,
    /// Small flushes seen in the current window.
    seen: u32,
    /// Of those, the ones that took longer than the target.
    late: u32,
    /// Small flushes that took longer than the target, since the start.
    late_total: u64,
    /// When the last small flush ended, if one did while pacing was on.
    last_small: Option<Instant>,
}

impl Turns {
    /// Whether a chunk's pause is over at `now`.
    fn gap_over(&self, now: Instant) -> bool {
        self.next_chunk_at.is_none_or(|at| now >= at)
    }

    /// Paces chunks by how long small flushes take, a window of
    /// [`WINDOW`] of them at a time: when more than one in a hundred ran
    /// past `target`, the gap doubles; when none or one did, it shrinks by
    /// an eighth. So the pace settles where about 99 small flushes in 100
    /// meet the target: chunks give way fast when small commits suffer
    /// and win their pace back gradually.
    fn observe(&mut self, took: Duration, target: Duration) {
        self.last_small = Some(Instant::now());
        let late = took > target;
        self.seen += 1;
        self.late += u32::from(late);
        self.late_total += u64::from(late);
        if self.seen < WINDOW {
            return;
        }
        self.gap = if self.late * 100 > self.seen {
            (self.gap * 2).clamp(MIN_GAP, MAX_GAP)
        } else if self.gap > MIN_GAP {
            self.gap - self.gap / 8
        } else {
            Duration::ZERO
        };
        (self.seen, self.late) = (0, 0);
    }

    /// A chunk ended at `now`: the next may start once the pause is over,
    /// but no pause is kept once small flushes have stopped for [`QUIET`].
    fn chunk_ended(&mut self, now: Instant) {
        if self
            .last_small
            .is_none_or(|at| now.saturating_duration_since(at) > QUIET)
        {
            (self.gap, self.seen, self.late) = (Duration::ZERO, 0, 0);
        }
        self.next_chunk_at = (!self.gap.is_zero()).then(|| now + self.gap);
    }
}

/// How the store paces big syncs for small ones, now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncPacing {
    /// The pause between two chunks of big syncs (zero: none).
    pub pause: Duration,
    /// Small commits that took longer than the target, since the start.
    pub late_small_commits: u64,
}

/// What a flush closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// A sync of at most [`CHUNK_BYTES`], no chunk written first: the
    /// latency the pacing protects.
    Small,
    /// The closing flush of a sync written out in chunks.
    AfterChunks,
}

/// A turn at the disk, given back when dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    scheduler: &'a SyncScheduler,
    chunk: bool,
    /// For a small flush, when it asked for its turn.
    small_since: Option<Instant>,
}

impl SyncScheduler {
    fn lock(&self) -> MutexGuard<'_, Turns> {
        // The state is a few counters updated whole under the lock.
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Paces chunks from now on whenever small flushes take longer than
    /// `target` (see [`Turns::observe`]); `None` stops pacing.
    pub(crate) fn set_target(&self, target: Option<Duration>) {
        let mut turns = self.lock();
        turns.target = target;
        if target.is_none() {
            turns.gap = Duration::ZERO;
            turns.next_chunk_at = None;
        }
        drop(turns);
        self.changed.notify_all();
    }

    /// The pacing now.
    pub(crate) fn pacing(&self) -> SyncPacing {
        let turns = self.lock();
        SyncPacing {
            pause: turns.gap,
            late_small_commits: turns.late_total,
        }
    }

    /// Waits for a turn to flush: no chunk is being written, and either
    /// none is due (waiting, its pause over) or this flush waited through
    /// the last one.
    pub(crate) fn flush(&self, kind: Flush) -> Turn<'_> {
        let asked = Instant::now();
        let mut turns = self.lock();
        turns.flushes_waiting += 1;
        while turns.writing
            || (turns.chunks_waiting > 0
                && turns.flush_grants == 0
                && turns.gap_over(Instant::now()))
        {
            turns = self.changed.wait(turns).unwrap_or_else(|p| p.into_inner());
        }
        turns.flushes_waiting -= 1;
        turns.flush_grants = turns.flush_grants.saturating_sub(1);
        turns.flushing += 1;
        Turn {
            scheduler: self,
            chunk: false,
            small_since: (kind == Flush::Small && turns.target.is_some()).then_some(asked),
        }
    }

    /// Waits for a turn to write a chunk: its pause since the last chunk
    /// over, nothing else at the disk, and every flush granted a turn has
    /// taken it. While the pause runs, flushes start freely.
    pub(crate) fn chunk(&self) -> Turn<'_> {
        let mut turns = self.lock();
        turns.chunks_waiting += 1;
        loop {
            let now = Instant::now();
            if turns.writing || turns.flushing > 0 || turns.flush_grants > 0 {
                turns = self.changed.wait(turns).unwrap_or_else(|p| p.into_inner());
            } else if let Some(pause) = turns.next_chunk_at.filter(|&at| at > now) {
                turns = self
                    .changed
                    .wait_timeout(turns, pause - now)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|p| p.into_inner().0);
            } else {
                break;
            }
        }
        turns.chunks_waiting -= 1;
        turns.writing = true;
        Turn {
            scheduler: self,
            chunk: true,
            small_since: None,
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
            turns.chunk_ended(Instant::now());
        } else {
            turns.flushing -= 1;
            if let (Some(since), Some(target)) = (self.small_since, turns.target) {
                turns.observe(since.elapsed(), target);
            }
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
                scheduler.flush(Flush::Small)
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

    /// Sets the pause, as if a small flush had just ended late.
    fn pause_now(scheduler: &SyncScheduler, gap: Duration) {
        let mut turns = scheduler.lock();
        turns.gap = gap;
        turns.last_small = Some(Instant::now());
    }

    #[test]
    fn flushes_run_side_by_side_when_no_chunk_waits() {
        let scheduler = SyncScheduler::default();
        let a = scheduler.flush(Flush::Small);
        let b = scheduler.flush(Flush::Small);
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
        let running = scheduler.flush(Flush::Small);
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

    #[test]
    fn late_small_flushes_pause_chunks_and_punctual_ones_win_the_pace_back() {
        let scheduler = SyncScheduler::default();
        scheduler.set_target(Some(Duration::from_nanos(1)));
        // Every small flush takes longer than a nanosecond: a window of
        // them starts the pause; the next window doubles it.
        for _ in 0..WINDOW {
            drop(scheduler.flush(Flush::Small));
        }
        assert_eq!(
            scheduler.pacing(),
            SyncPacing {
                pause: MIN_GAP,
                late_small_commits: u64::from(WINDOW)
            }
        );
        for _ in 0..WINDOW {
            drop(scheduler.flush(Flush::Small));
        }
        assert_eq!(scheduler.lock().gap, MIN_GAP * 2);
        // Closing flushes of chunked syncs are not what the target is for.
        for _ in 0..WINDOW {
            drop(scheduler.flush(Flush::AfterChunks));
        }
        assert_eq!(scheduler.lock().gap, MIN_GAP * 2);
        // Punctual small flushes shrink the pause, and end it once short.
        scheduler.set_target(Some(Duration::from_secs(3600)));
        for _ in 0..WINDOW {
            drop(scheduler.flush(Flush::Small));
        }
        assert_eq!(scheduler.lock().gap, MIN_GAP * 2 - MIN_GAP * 2 / 8);
        for _ in 0..WINDOW * 8 {
            drop(scheduler.flush(Flush::Small));
        }
        assert_eq!(scheduler.lock().gap, Duration::ZERO);
    }

    #[test]
    fn the_pause_never_grows_past_its_bound() {
        let mut turns = Turns::default();
        for _ in 0..WINDOW * 64 {
            turns.observe(Duration::from_secs(1), Duration::from_millis(1));
        }
        assert_eq!(turns.gap, MAX_GAP);
        // One late flush in a hundred is within the target: it shrinks.
        for n in 0..WINDOW {
            turns.observe(
                Duration::from_secs(u64::from(n == 0)),
                Duration::from_millis(1),
            );
        }
        assert_eq!(turns.gap, MAX_GAP - MAX_GAP / 8);
    }

    #[test]
    fn a_paused_chunk_waits_while_flushes_start_freely() {
        let scheduler = Arc::new(SyncScheduler::default());
        scheduler.set_target(Some(Duration::from_millis(1)));
        pause_now(&scheduler, Duration::from_secs(3600));
        drop(scheduler.chunk());
        let paused_until = scheduler.lock().next_chunk_at.expect("a pause");
        let (order, events) = mpsc::channel();
        let chunk = take_turn(&scheduler, &order, true, "chunk");
        await_state(&scheduler, |t| t.chunks_waiting == 1);
        // The chunk waits for its pause, not for a turn: flushes go first.
        let flush = take_turn(&scheduler, &order, false, "flush");
        assert_eq!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok("flush"),
            "a flush starts while a chunk is paused"
        );
        flush.join().unwrap();
        assert!(Instant::now() < paused_until);
        assert!(events.try_recv().is_err(), "the chunk is still paused");
        // Pacing turned off: the pause ends and the chunk goes.
        scheduler.set_target(None);
        chunk.join().unwrap();
        assert_eq!(events.try_iter().collect::<Vec<_>>(), ["chunk"]);
    }

    #[test]
    fn a_chunk_goes_once_its_pause_is_over() {
        let scheduler = Arc::new(SyncScheduler::default());
        scheduler.set_target(Some(Duration::from_millis(1)));
        pause_now(&scheduler, Duration::from_millis(20));
        drop(scheduler.chunk());
        let paused_until = scheduler.lock().next_chunk_at.expect("a pause");
        drop(scheduler.chunk());
        assert!(
            Instant::now() >= paused_until,
            "the chunk waited out its pause"
        );
    }

    #[test]
    fn the_pause_ends_once_small_flushes_stop() {
        let mut turns = Turns {
            gap: MAX_GAP,
            seen: 7,
            late: 7,
            ..Turns::default()
        };
        let now = Instant::now();
        turns.last_small = Some(now);
        turns.chunk_ended(now + QUIET);
        assert_eq!(turns.gap, MAX_GAP, "small flushes ran within QUIET");
        assert_eq!(turns.next_chunk_at, Some(now + QUIET + MAX_GAP));
        turns.chunk_ended(now + QUIET * 2);
        assert_eq!(turns.gap, Duration::ZERO, "none for longer than QUIET");
        assert_eq!((turns.seen, turns.late, turns.next_chunk_at), (0, 0, None));
    }
}
