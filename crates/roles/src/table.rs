//! The table itself: a writer side ([`RoleTable`]) and immutable snapshots.
//!
//! Layout of a [`Snapshot`]: [`SHARDS`] shards, each a hash table of topics
//! keyed by name; each topic holds its partitions sorted by index. A lookup
//! hashes the topic name once, then finds each partition by direct index
//! (partitions are almost always dense `0..n`) or, failing that, by binary
//! search. Requests name one topic and many partitions, so the per-entry cost
//! is a bounds check and a compare.
//!
//! Shards and topics sit behind `Arc`s shared between consecutive snapshots.
//! An incremental update copies only the shards and topics it changes, so its
//! cost follows the size of the change, not of the table, and dropping the
//! previous snapshot frees only what changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::policy::ProducePolicy;
use crate::update::{ApplyOutcome, ReplicaRole, RoleChange, RoleUpdate};

/// Number of shards a snapshot's topics are spread over.
pub const SHARDS: usize = 64;

/// A one-off handle on the current snapshot (see [`RoleTable::snapshot`]).
pub type SnapshotGuard = arc_swap::Guard<Arc<Snapshot>>;

/// A reader's cached view of the table: one per connection (or thread).
///
/// [`RoleReader::load`] costs one atomic load when the table has not
/// changed since the last call, and swaps in the new snapshot when it has.
/// It never takes a lock and never waits for a writer. An idle reader keeps
/// its last snapshot alive until its next load.
#[derive(Clone, Debug)]
pub struct RoleReader {
    published: Arc<Published>,
    cached: Arc<Snapshot>,
    /// The topic looked up last in `cached` (cleared whenever `cached`
    /// moves on). A connection produces to the same topic request after
    /// request, so this skips hashing the name on nearly every request.
    memo: Option<Arc<TopicRoles>>,
    /// `memo`'s name as a [`ShortName`], or [`ShortName::NONE`] when there
    /// is no memo or its name is long.
    memo_key: ShortName,
}

impl RoleReader {
    /// The current snapshot.
    #[inline(always)]
    pub fn load(&mut self) -> &Snapshot {
        self.revalidate();
        &self.cached
    }

    /// The current snapshot, and the roles of `topic` in it.
    #[inline(always)]
    pub fn load_topic(&mut self, topic: &str) -> (&Snapshot, Option<&TopicRoles>) {
        self.revalidate();
        let hit = match ShortName::of(topic) {
            Some(key) => key == self.memo_key,
            None => matches!(&self.memo, Some(roles) if *roles.name == *topic),
        };
        if !hit {
            self.remember(topic);
        }
        (&self.cached, self.memo.as_deref())
    }

    /// Looks `topic` up by hash and keeps it as the memo.
    #[inline(never)]
    fn remember(&mut self, topic: &str) {
        self.memo = self.cached.topic_arc(topic).cloned();
        self.memo_key = match &self.memo {
            Some(roles) => ShortName::of(&roles.name).unwrap_or(ShortName::NONE),
            None => ShortName::NONE,
        };
    }

    /// Moves to the newest snapshot if the table published one since.
    #[inline(always)]
    fn revalidate(&mut self) {
        // Acquire pairs with the writer's Release: a generation seen here was
        // stored after its snapshot, so `refresh` finds that one or a newer.
        if self.published.generation.load(Ordering::Acquire) != self.cached.generation {
            self.refresh();
        }
    }

    #[cold]
    #[inline(never)]
    fn refresh(&mut self) {
        self.cached = self.published.snapshot.load_full();
        self.memo = None;
        self.memo_key = ShortName::NONE;
    }
}

/// A topic name of up to 16 bytes as three words: its length, and its
/// first and last bytes read as (possibly overlapping) words. Two such names
/// are equal exactly when their keys are, so the reader's memo is checked
/// with three compares, inline, instead of a call to `memcmp`. Topic names
/// on the hot path are short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShortName {
    len: usize,
    head: u64,
    tail: u64,
}

impl ShortName {
    /// Matches no name (its length is no name's).
    const NONE: Self = Self {
        len: usize::MAX,
        head: 0,
        tail: 0,
    };

    /// The key of `name`, if it is at most 16 bytes long. Given the length,
    /// the two words cover every byte: 8 to 16 bytes as the first and last
    /// eight, 4 to 7 as the first and last four, 1 to 3 as the first,
    /// middle and last byte.
    #[inline(always)]
    fn of(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        let len = bytes.len();
        let word = |b: &[u8; 8]| u64::from_ne_bytes(*b);
        let half = |b: &[u8; 4]| u64::from(u32::from_ne_bytes(*b));
        let (head, tail) = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (Some(first), Some(last)) if len <= 16 => (word(first), word(last)),
            (Some(_), Some(_)) => return None,
            _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
                (Some(first), Some(last)) => (half(first), half(last)),
                _ => match bytes.first() {
                    None => (0, 0),
                    Some(&first) => {
                        let rest = u64::from(bytes[len / 2]) << 8 | u64::from(bytes[len - 1]) << 16;
                        (u64::from(first) | rest, 0)
                    }
                },
            },
        };
        Some(Self { len, head, tail })
    }
}

/// What the table publishes to its readers: the snapshot, and its
/// generation as a plain atomic word readers can check in one load.
#[derive(Debug)]
struct Published {
    snapshot: ArcSwap<Snapshot>,
    /// The generation of `snapshot`, stored (Release) after it.
    generation: AtomicU64,
}

/// One partition's stored role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRole {
    partition: u32,
    policy: ProducePolicy,
    mirror: Option<Arc<PartitionMirrorConfig>>,
}

impl PartitionRole {
    fn new(partition: u32, mirror: Option<PartitionMirrorConfig>) -> Self {
        Self {
            partition,
            policy: ProducePolicy::of(mirror.as_ref()),
            mirror: mirror.map(Arc::new),
        }
    }

    /// The partition index.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// What local producers may do, computed when the role was stored.
    #[inline]
    pub fn policy(&self) -> ProducePolicy {
        self.policy
    }

    /// The mirror role as the SC sent it.
    pub fn mirror(&self) -> Option<&PartitionMirrorConfig> {
        self.mirror.as_deref()
    }
}

/// The partitions of one topic that this SPU leads.
#[derive(Clone, Debug)]
pub struct TopicRoles {
    name: Arc<str>,
    hash: u64,
    /// Sorted by partition index, no duplicates.
    partitions: Vec<PartitionRole>,
}

impl TopicRoles {
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role of `partition`, if this SPU leads it.
    #[inline(always)]
    pub fn partition(&self, partition: u32) -> Option<&PartitionRole> {
        self.roles().get(partition)
    }

    /// The partitions, sorted by index.
    pub fn partitions(&self) -> &[PartitionRole] {
        &self.partitions
    }

    /// The partitions as a [`PartitionRoles`] lookup.
    #[inline(always)]
    pub fn roles(&self) -> PartitionRoles<'_> {
        PartitionRoles(&self.partitions)
    }

    fn upsert(&mut self, role: PartitionRole) -> bool {
        match self
            .partitions
            .binary_search_by_key(&role.partition, |p| p.partition)
        {
            Ok(i) => {
                self.partitions[i] = role;
                false
            }
            Err(i) => {
                self.partitions.insert(i, role);
                true
            }
        }
    }

    fn remove(&mut self, partition: u32) -> bool {
        match self
            .partitions
            .binary_search_by_key(&partition, |p| p.partition)
        {
            Ok(i) => {
                self.partitions.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

/// The partitions of one topic that this SPU leads, as a copyable lookup.
///
/// A loop over many entries of one topic takes this once, so each lookup
/// starts from a slice already in registers rather than from the topic.
#[derive(Clone, Copy, Debug, Default)]
pub struct PartitionRoles<'a>(&'a [PartitionRole]);

impl<'a> PartitionRoles<'a> {
    /// The lookup of a topic that has no partition led here.
    pub const NONE: Self = PartitionRoles(&[]);

    /// The role of `partition`, if this SPU leads it.
    #[inline(always)]
    pub fn get(self, partition: u32) -> Option<&'a PartitionRole> {
        // Dense fast path: partition i usually sits at position i.
        match self.0.get(partition as usize) {
            Some(role) if role.partition == partition => Some(role),
            _ => self.search(partition),
        }
    }

    /// What local producers may do on `partition`, if this SPU leads it.
    #[inline(always)]
    pub fn policy(self, partition: u32) -> Option<ProducePolicy> {
        self.get(partition).map(|role| role.policy)
    }

    /// The lookup when partition i is not at position i (this SPU leads
    /// only some of the topic's partitions).
    #[inline]
    fn search(self, partition: u32) -> Option<&'a PartitionRole> {
        self.0
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .map(|i| &self.0[i])
    }
}

#[derive(Clone, Debug, Default)]
struct Shard {
    topics: HashTable<Arc<TopicRoles>>,
}

/// An immutable view of the table at one epoch.
#[derive(Debug)]
pub struct Snapshot {
    epoch: i64,
    /// Unique per published snapshot (epochs come from the SC and need not be).
    generation: u64,
    partitions: usize,
    hasher: RandomState,
    shards: Box<[Arc<Shard>]>,
}

impl Snapshot {
    fn empty(hasher: RandomState) -> Self {
        Self {
            epoch: i64::MIN,
            generation: 0,
            partitions: 0,
            hasher,
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
        }
    }

    /// The epoch of the last update applied (`i64::MIN` before the first).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// How many partitions this SPU leads.
    pub fn len(&self) -> usize {
        self.partitions
    }

    /// Whether this SPU leads no partition.
    pub fn is_empty(&self) -> bool {
        self.partitions == 0
    }

    #[inline]
    fn shard_of(hash: u64) -> usize {
        // Middle bits: hashbrown takes bucket positions from the low bits and
        // its control tags from the top seven.
        (hash >> 32) as usize % SHARDS
    }

    /// The partitions of `topic` this SPU leads, if any.
    #[inline]
    pub fn topic(&self, topic: &str) -> Option<&TopicRoles> {
        self.topic_arc(topic).map(|t| &**t)
    }

    #[inline]
    fn topic_arc(&self, topic: &str) -> Option<&Arc<TopicRoles>> {
        let hash = self.hasher.hash_one(topic);
        self.shards[Self::shard_of(hash)]
            .topics
            .find(hash, |t| &*t.name == topic)
    }

    /// The role of one partition, if this SPU leads it.
    #[inline]
    pub fn get(&self, topic: &str, partition: u32) -> Option<&PartitionRole> {
        self.topic(topic)?.partition(partition)
    }

    /// Every topic in the snapshot, in no particular order.
    pub fn topics(&self) -> impl Iterator<Item = &TopicRoles> {
        self.shards
            .iter()
            .flat_map(|s| s.topics.iter().map(|t| &**t))
    }

    fn upsert(&mut self, topic: &str, role: PartitionRole) {
        let hash = self.hasher.hash_one(topic);
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(hash)]);
        let inserted = match shard.topics.find_mut(hash, |t| &*t.name == topic) {
            Some(existing) => Arc::make_mut(existing).upsert(role),
            None => {
                shard.topics.insert_unique(
                    hash,
                    Arc::new(TopicRoles {
                        name: topic.into(),
                        hash,
                        partitions: vec![role],
                    }),
                    |t| t.hash,
                );
                true
            }
        };
        self.partitions += usize::from(inserted);
    }

    fn remove(&mut self, topic: &str, partition: u32) {
        let hash = self.hasher.hash_one(topic);
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(hash)]);
        let Ok(entry) = shard.topics.find_entry(hash, |t| &*t.name == topic) else {
            return;
        };
        if entry.get().partition(partition).is_none() {
            return;
        }
        let mut entry = entry;
        let roles = Arc::make_mut(entry.get_mut());
        roles.remove(partition);
        self.partitions -= 1;
        if roles.partitions.is_empty() {
            entry.remove();
        }
    }
}

/// The writer side of the table, shared by the control plane and the hot path.
#[derive(Debug)]
pub struct RoleTable {
    local_spu: i32,
    current: Arc<Published>,
    /// Serialises writers: each builds on the snapshot the previous published.
    writer: Mutex<()>,
}

impl RoleTable {
    /// An empty table for the SPU `local_spu`. Until the first update every
    /// partition is unknown, so every produce is refused as not-leader.
    pub fn new(local_spu: i32) -> Self {
        Self {
            local_spu,
            current: Arc::new(Published {
                snapshot: ArcSwap::from_pointee(Snapshot::empty(RandomState::default())),
                generation: AtomicU64::new(0),
            }),
            writer: Mutex::new(()),
        }
    }

    /// The SPU this table belongs to.
    pub fn local_spu(&self) -> i32 {
        self.local_spu
    }

    /// A cached reader for one connection or thread: the hot path's way in.
    pub fn reader(&self) -> RoleReader {
        RoleReader {
            published: Arc::clone(&self.current),
            cached: self.current.snapshot.load_full(),
            memo: None,
            memo_key: ShortName::NONE,
        }
    }

    /// The current snapshot, for a one-off look. Lock-free; the hot path
    /// uses a [`RoleReader`], which is cheaper.
    #[inline]
    pub fn snapshot(&self) -> SnapshotGuard {
        self.current.snapshot.load()
    }

    /// The current snapshot as an owned `Arc`, to hold across waits.
    #[inline]
    pub fn snapshot_arc(&self) -> Arc<Snapshot> {
        self.current.snapshot.load_full()
    }

    /// The epoch of the last update applied.
    pub fn epoch(&self) -> i64 {
        self.current.snapshot.load().epoch
    }

    /// Applies an SC update and publishes the result atomically.
    ///
    /// An update whose epoch is not newer than the table's is stale or a
    /// duplicate and is ignored. A full sync drops every partition it does
    /// not list. An upsert naming another leader removes the partition.
    pub fn apply(&self, update: RoleUpdate) -> ApplyOutcome {
        self.apply_inner(update, false)
    }

    /// Applies a full sync whatever its epoch: the first sync of a new
    /// control-plane session, since a restarted SC may count epochs afresh.
    /// Later updates of the session must then be newer than it.
    pub fn resync(&self, epoch: i64, all: Vec<ReplicaRole>) -> ApplyOutcome {
        self.apply_inner(RoleUpdate::Sync { epoch, all }, true)
    }

    fn apply_inner(&self, update: RoleUpdate, new_session: bool) -> ApplyOutcome {
        // A poisoned lock only means another writer panicked between load and
        // store; the published snapshot is still whole, so carry on.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let current = self.current.snapshot.load_full();
        let offered = update.epoch();
        if offered <= current.epoch && !new_session {
            return ApplyOutcome::Stale {
                current: current.epoch,
                offered,
            };
        }
        let mut next = match update {
            RoleUpdate::Sync { all, .. } => {
                let mut next = Snapshot::empty(current.hasher.clone());
                next.generation = current.generation + 1;
                for replica in all {
                    self.apply_one(&mut next, RoleChange::Upsert(replica));
                }
                next
            }
            RoleUpdate::Changes { changes, .. } => {
                let mut next = Snapshot {
                    epoch: current.epoch,
                    generation: current.generation + 1,
                    partitions: current.partitions,
                    hasher: current.hasher.clone(),
                    shards: current.shards.clone(),
                };
                for change in changes {
                    self.apply_one(&mut next, change);
                }
                next
            }
        };
        next.epoch = offered;
        let partitions = next.partitions;
        let generation = next.generation;
        self.current.snapshot.store(Arc::new(next));
        self.current.generation.store(generation, Ordering::Release);
        ApplyOutcome::Applied {
            epoch: offered,
            partitions,
        }
    }

    fn apply_one(&self, next: &mut Snapshot, change: RoleChange) {
        match change {
            RoleChange::Upsert(ReplicaRole {
                topic,
                partition,
                leader,
                mirror,
            }) => {
                if leader == self.local_spu {
                    next.upsert(&topic, PartitionRole::new(partition, mirror));
                } else {
                    next.remove(&topic, partition);
                }
            }
            RoleChange::Remove { topic, partition } => next.remove(&topic, partition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ShortName;

    /// Keys are equal exactly when names are: every length up to 16 (and
    /// past it, where there is no key), a change at every position, and
    /// names one byte longer or shorter.
    #[test]
    fn short_name_keys_are_equal_exactly_when_names_are() {
        let same = |a: &str, b: &str| match (ShortName::of(a), ShortName::of(b)) {
            (Some(a), Some(b)) => a == b,
            (None, None) => panic!("neither {a:?} nor {b:?} has a key"),
            _ => false,
        };
        for len in 0..=20 {
            let name: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            assert_eq!(ShortName::of(&name).is_some(), len <= 16, "len {len}");
            if len > 16 {
                continue;
            }
            assert!(same(&name, &name.clone()), "len {len}");
            assert_ne!(ShortName::of(&name), Some(ShortName::NONE));
            for at in 0..len {
                let mut other = name.clone().into_bytes();
                other[at] = b'Z';
                let other = String::from_utf8(other).unwrap();
                assert!(!same(&name, &other), "len {len}, differs at {at}");
            }
            let longer = format!("{name}x");
            if longer.len() <= 16 {
                assert!(!same(&name, &longer) && !same(&longer, &name));
            }
        }
    }
}
