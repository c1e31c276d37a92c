//! Upgrading a store of 10 thousand topics (and their 10 thousand
//! partitions) from schema 1 to schema 2: check, migrate into a new
//! generation with every file synced, switch. Each iteration starts from a
//! fresh copy of the schema-1 store (the copy is not timed).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mg_sc::upgrade::{self, Generations, Steps, Upgraded};

const TOPICS: usize = 10_000;

fn write_v1_store(sc: &Path) {
    let meta = sc.join("metadata");
    for kind in ["spu", "topic", "partition", "mirror"] {
        fs::create_dir_all(meta.join(kind)).unwrap();
    }
    fs::write(
        meta.join("spu/5001.json"),
        r#"{"schema": 1, "kind": "spu", "name": "5001", "spec": {"id": 5001, "public_endpoint": "127.0.0.1:9005", "private_endpoint": "127.0.0.1:9004"}}"#,
    )
    .unwrap();
    for i in 0..TOPICS {
        let name = format!("topic-{i:05}");
        fs::write(
            meta.join(format!("topic/{name}.json")),
            format!(r#"{{"schema": 1, "kind": "topic", "name": "{name}", "spec": {{"name": "{name}", "replicas": {{"computed": {{"partitions": 1}}}}}}}}"#),
        )
        .unwrap();
        fs::write(
            meta.join(format!("partition/{name}-0.json")),
            format!(r#"{{"schema": 1, "kind": "partition", "name": "{name}-0", "spec": {{"topic": "{name}", "partition": 0, "leader": 5001}}}}"#),
        )
        .unwrap();
    }
}

fn upgrade_10k_topics(c: &mut Criterion) {
    let template = tempfile::tempdir().unwrap();
    write_v1_store(template.path());
    let mut group = c.benchmark_group("upgrade");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("10k_topics", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let run = tempfile::tempdir().unwrap();
                mg_testkit::copy_dir(template.path(), run.path());
                // The copy must not be charged to the upgrade's sync.
                mg_sc::store::sync_filesystem(run.path()).unwrap();
                let start = Instant::now();
                let outcome = upgrade::upgrade(&Generations::files(run.path()), &mut Steps::default(), |_, _| {}).unwrap();
                total += start.elapsed();
                assert!(matches!(outcome, Upgraded::Migrated { objects, .. } if objects == 2 * TOPICS + 1));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, upgrade_10k_topics);
criterion_main!(benches);
