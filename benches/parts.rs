use criterion::{Criterion, criterion_group, criterion_main};
use mg_guard::Guard;
use mg_roles::{ReplicaRole, RoleTable, RoleUpdate};
use mg_testkit::sized_request;
use mg_wire::{ProduceRequest, RequestHeader};
use std::hint::black_box;
use std::sync::Arc;

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
    c.bench_function("header", |b| {
        b.iter(|| RequestHeader::parse(black_box(&frame)).map(|h| h.1))
    });
    c.bench_function("parse", |b| {
        b.iter(|| ProduceRequest::parse(black_box(&frame)).map(|r| r.1.entry_count()))
    });
    c.bench_function("load", |b| b.iter(|| black_box(reader.load()).len()));
    c.bench_function("topic", |b| {
        b.iter(|| {
            let s = reader.load();
            s.topic(black_box("bench-topic"))
                .map(|t| t.partitions().len())
        })
    });
    c.bench_function("judge_only", |b| {
        b.iter(|| {
            guard
                .judge(black_box(&frame))
                .map(|j| j.request().entry_count())
                .ok()
        })
    });
    c.bench_function("judge+verdicts", |b| {
        b.iter(|| {
            guard
                .judge(black_box(&frame))
                .map(|j| j.verdicts().filter(|v| v.verdict.is_accept()).count())
                .ok()
        })
    });
}
criterion_group!(benches, parts);
criterion_main!(benches);
