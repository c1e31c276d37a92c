//! (b) Role-table lookups at 1 thousand and 1 million partitions, and
//! (c) readers judging requests while a writer applies 10 thousand
//! incremental changes.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mg_guard::Guard;
use mg_roles::{ReplicaRole, RoleChange, RoleTable, RoleUpdate};
use mg_testkit::{ProduceSpec, home};

/// A table of `topics` x `partitions`, every partition led here.
fn table(topics: usize, partitions: u32) -> Arc<RoleTable> {
    let table = Arc::new(RoleTable::new(1));
    let all = (0..topics)
        .flat_map(|t| {
            (0..partitions).map(move |p| ReplicaRole {
                topic: format!("topic-{t:05}"),
                partition: p,
                leader: 1,
                mirror: (p % 4 == 0).then(|| home("edge", false)),
            })
        })
        .collect();
    table.apply(RoleUpdate::Sync { epoch: 1, all });
    table
}

/// A fixed pseudo-random walk over the keys (xorshift), so every lookup
/// misses the cache as it would on a busy SPU.
fn keys(topics: usize, partitions: u32, n: usize) -> Vec<(String, u32)> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = (x % topics as u64) as usize;
            let p = ((x >> 32) % u64::from(partitions)) as u32;
            (format!("topic-{t:05}"), p)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (label, topics, partitions) in [("1K", 10, 100u32), ("1M", 1000, 1000u32)] {
        let table = table(topics, partitions);
        assert_eq!(table.snapshot().len(), topics * partitions as usize);
        let keys = keys(topics, partitions, 1 << 16);
        // What the hot path does: a connection's cached reader, then the lookup.
        let mut reader = table.reader();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("reader", label), |b| {
            b.iter(|| {
                let (topic, p) = &keys[i & 0xFFFF];
                i = i.wrapping_add(1);
                let snap = reader.load();
                black_box(snap.get(black_box(topic), *p).map(|r| r.policy()))
            })
        });
        // A one-off look, as the control plane or metrics would take it.
        group.bench_function(BenchmarkId::new("one_off", label), |b| {
            b.iter(|| {
                let (topic, p) = &keys[i & 0xFFFF];
                i = i.wrapping_add(1);
                let snap = table.snapshot();
                black_box(snap.get(black_box(topic), *p).map(|r| r.policy()))
            })
        });
    }
    group.finish();
}

const TOPICS: usize = 1000;
const PARTITIONS: u32 = 1000;
const CHANGES: usize = 10_000;

/// 10k single-change updates flipping mirror roles on random partitions.
fn change_stream() -> Vec<Vec<RoleChange>> {
    keys(TOPICS, PARTITIONS, CHANGES)
        .into_iter()
        .enumerate()
        .map(|(i, (topic, partition))| {
            vec![RoleChange::Upsert(ReplicaRole {
                topic,
                partition,
                leader: 1,
                mirror: Some(home("edge", i % 2 == 0)),
            })]
        })
        .collect()
}

/// A 1-topic x 16-entry request, as the official client sends.
fn request() -> Bytes {
    ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(
            "topic-00042".into(),
            (0..16).map(|p| (p, vec![vec![vec![1u8; 100]]])).collect(),
        )],
        ..Default::default()
    }
    .frame(25, 1)
}

fn judge(guard: &mut Guard, frame: &Bytes) -> usize {
    guard
        .judge(frame)
        .expect("valid")
        .verdicts()
        .filter(|v| v.verdict.is_accept())
        .count()
}

/// Two reader threads each judge `iters` requests; returns their mean time
/// per iteration (per judged request, per reader).
fn readers(guard: &Guard, frame: &Bytes, iters: u64) -> Duration {
    let total: Duration = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut guard = guard.clone();
                s.spawn(move || {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(judge(&mut guard, black_box(frame)));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reader")).sum()
    });
    total / 2
}

fn contention(c: &mut Criterion) {
    let table = table(TOPICS, PARTITIONS);
    let guard = Guard::new(table.clone());
    let frame = request();
    let changes = change_stream();
    let mut epoch = 1i64;
    let mut next_epoch = move || {
        epoch += 1;
        epoch
    };

    let mut group = c.benchmark_group("contention");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);

    group.bench_function("reader/no_writer", |b| {
        b.iter_custom(|iters| readers(&guard, &frame, iters))
    });

    // Readers measured while a writer keeps applying the change stream.
    let epochs = std::sync::Mutex::new(&mut next_epoch);
    group.bench_function("reader/with_writer", |b| {
        b.iter_custom(|iters| {
            let stop = AtomicBool::new(false);
            thread::scope(|s| {
                s.spawn(|| {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let epoch = (epochs.lock().unwrap())();
                        table.apply(RoleUpdate::Changes {
                            epoch,
                            changes: changes[i % CHANGES].clone(),
                        });
                        i += 1;
                    }
                });
                let elapsed = readers(&guard, &frame, iters);
                stop.store(true, Ordering::Relaxed);
                elapsed
            })
        })
    });

    // The writer's side: 10k changes applied while two readers judge.
    group.sample_size(10);
    group.bench_function("writer/10k_changes_with_readers", |b| {
        b.iter_custom(|iters| {
            let stop = AtomicBool::new(false);
            thread::scope(|s| {
                for _ in 0..2 {
                    let mut guard = guard.clone();
                    let (stop, frame) = (&stop, &frame);
                    s.spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            black_box(judge(&mut guard, frame));
                        }
                    });
                }
                let start = Instant::now();
                for _ in 0..iters {
                    for change in &changes {
                        let epoch = (epochs.lock().unwrap())();
                        table.apply(RoleUpdate::Changes {
                            epoch,
                            changes: change.clone(),
                        });
                    }
                }
                let elapsed = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, lookup, contention);
criterion_main!(benches);
