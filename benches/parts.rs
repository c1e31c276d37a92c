//! Where the time of a 1-topic x 1-entry verdict goes, step by step: a
//! diagnostic for whoever tunes the hot path (`cargo bench --bench parts`).
//! `make bench` does not run it; the figures that matter are in `verdict`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mg_guard::Guard;
use mg_roles::{ReplicaRole, RoleTable, RoleUpdate};
use mg_testkit::sized_request;
use mg_wire::{ProduceRequest, RequestHeader};

fn parts(c: &mut Criterion) {
    let frame = sized_request("bench-topic", 1, 1024);
    let table = Arc::new(RoleTable::new(1));
    table.apply(RoleUpdate::Sync {
        epoch: 1,
        all: vec![ReplicaRole {
            topic: "bench-topic".into(),
            partition: 0,
            leader: 1,
            mirror: None,
        }],
    });
    let mut reader = table.reader();
    let mut guard = Guard::new(table.clone());
    let mut group = c.benchmark_group("parts");
    group.bench_function("1_header", |b| {
        b.iter(|| RequestHeader::parse(black_box(&frame)).map(|h| h.1))
    });
    group.bench_function("2_header+body", |b| {
        b.iter(|| ProduceRequest::parse(black_box(&frame)).map(|r| r.1.entry_count()))
    });
    group.bench_function("3_reader_load", |b| {
        b.iter(|| black_box(reader.load()).len())
    });
    group.bench_function("4_reader_topic_hashed", |b| {
        b.iter(|| {
            reader
                .load()
                .topic(black_box("bench-topic"))
                .map(|t| t.partitions().len())
        })
    });
    group.bench_function("5_reader_topic_memo", |b| {
        b.iter(|| {
            reader
                .load_topic(black_box("bench-topic"))
                .1
                .map(|t| t.partitions().len())
        })
    });
    group.bench_function("6_judge", |b| {
        b.iter(|| {
            guard
                .judge(black_box(&frame))
                .map(|j| j.request().entry_count())
                .ok()
        })
    });
    group.bench_function("7_judge+verdicts", |b| {
        b.iter(|| {
            guard
                .judge(black_box(&frame))
                .map(|j| j.verdicts().filter(|v| v.verdict.is_accept()).count())
                .ok()
        })
    });
    group.finish();
}

criterion_group!(benches, parts);
criterion_main!(benches);
