//! One SC feeding hundreds of SPUs: 200 SPU control sessions (the project's
//! own SPUs, in this process, each with its real storage, role table and
//! control client, over loopback TCP) and 100k partitions (1000 topics of
//! 100, leaders round-robin: 500 per SPU) with 200 registered remotes.
//!
//! 1. **Role changes to 200 SPUs**, on the file store and on a real etcd
//!    (single member, on loopback): a mirror topic over the 200 remotes is
//!    created (one home partition, and so one new mirror role, per SPU);
//!    measured from the commit (the SC's change call returning, just after
//!    it woke its sessions) until each SPU's role table holds its role: the
//!    time the change takes to reach all 200 (per change, p50 and p99) and
//!    every (change, SPU) sample. Then changes that reach one SPU (a plain
//!    topic of one partition). The SC runs in this process for these, so
//!    that the commit instant is seen exactly. The steady state is
//!    measured: the first change waits until the SPUs' first reports (the
//!    offsets of all 100k partitions) are in.
//! 2. **A full resync of 100k partitions to one SPU** after it reconnects:
//!    an SC process (the release binary) whose 100k partitions one SPU
//!    leads; from the restarted SPU's start until its table holds all of
//!    them; the SC's RSS before and its peak during the resyncs.
//! 3. **The SC's peak RSS with 100k partitions and 200 SPUs**: an SC process
//!    with the 200 SPUs connected and synced.
//!
//! The metadata is written in the stores' own formats before each SC
//! starts (files; etcd through `migrate::to_etcd`). Results go to stdout
//! and to `target/control_scale.json`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mg_sc::Cluster;
use mg_sc::model::{
    MirrorKind, MirrorObject, PartitionObject, SpuObject, TopicObject, TopicReplicas,
};
use mg_sc::persist::StoreConfig;
use mg_sc::store::MetadataStore;
use mg_spu::{RunningSpu, Spu, SpuConfig};
use support::{binary, peak_rss_kib_of, quantile, rss_kib_of};

const SPUS: i32 = 200;
const TOPICS: usize = 1000;
const PARTITIONS_PER_TOPIC: u32 = 100;
const FIRST_SPU: i32 = 5001;
/// Changes that reach all 200 SPUs, per store.
const FAN_OUT_CHANGES: usize = 20;
/// Changes that reach one SPU, per store.
const SINGLE_CHANGES: usize = 50;
/// How long any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn remotes() -> Vec<String> {
    (0..SPUS).map(|i| format!("edge-{i:03}")).collect()
}

/// Writes an SC data directory's metadata: `spus` SPUs, `topics` topics of
/// `per_topic` partitions, leaders from `leader_of(global partition index)`,
/// and the remotes.
fn write_metadata(
    sc_dir: &Path,
    spus: i32,
    topics: usize,
    per_topic: u32,
    leader_of: impl Fn(usize) -> i32,
) {
    let store = MetadataStore::at(sc_dir.join(mg_sc::store::FIRST_GENERATION));
    for i in 0..spus {
        store
            .put_staged(&SpuObject {
                id: FIRST_SPU + i,
                public_endpoint: format!("127.0.0.1:{}", 10_000 + i),
                private_endpoint: String::new(),
                rack: None,
                extra: Default::default(),
            })
            .unwrap();
    }
    for remote in remotes() {
        store
            .put_staged(&MirrorObject {
                name: remote.clone(),
                kind: MirrorKind::Remote { id: remote },
                extra: Default::default(),
            })
            .unwrap();
    }
    let mut index = 0;
    for t in 0..topics {
        let name = format!("t{t:04}");
        store
            .put_staged(&TopicObject {
                name: name.clone(),
                replicas: TopicReplicas::Computed {
                    partitions: per_topic,
                },
                deleting: false,
                extra: Default::default(),
            })
            .unwrap();
        for p in 0..per_topic {
            store
                .put_staged(&PartitionObject {
                    topic: name.clone(),
                    partition: p,
                    leader: leader_of(index),
                    mirror: None,
                    mirror_state: Default::default(),
                    mirror_epoch: 0,
                    deleting: false,
                    extra: Default::default(),
                })
                .unwrap();
            index += 1;
        }
    }
    mg_sc::store::sync_filesystem(sc_dir).unwrap();
}

fn round_robin(index: usize) -> i32 {
    FIRST_SPU + (index % SPUS as usize) as i32
}

/// Starts the in-process SPUs `ids`, each under `dir`, on the SC at `sc`.
async fn start_spus(ids: &[i32], dir: &Path, sc: std::net::SocketAddr) -> Vec<RunningSpu> {
    let mut spus = Vec::with_capacity(ids.len());
    for &id in ids {
        let mut config = SpuConfig::new(id, dir.join(format!("spu-{id}")));
        config.sc = Some(sc);
        config.storage_lanes = 1;
        spus.push(Spu::new(config).unwrap().start().await.unwrap());
    }
    spus
}

/// Waits until `spu`'s table holds `partitions` partitions.
async fn synced(spu: &RunningSpu, partitions: usize) {
    let mut control = spu.control();
    tokio::time::timeout(PATIENCE, async {
        loop {
            if spu.roles().snapshot().len() >= partitions {
                return;
            }
            control.changed().await.expect("the SPU runs");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "SPU {} holds {} of {partitions} partitions",
            spu.roles().local_spu(),
            spu.roles().snapshot().len()
        )
    });
}

/// Waits until the SC holds reported offsets for every partition.
async fn reported(cluster: &Cluster) {
    let mut status = cluster.subscribe_status();
    let partitions = cluster.partitions();
    tokio::time::timeout(PATIENCE, async {
        while !partitions
            .iter()
            .all(|p| cluster.offsets(&p.topic, p.partition).is_some())
        {
            status.changed().await.expect("the SC runs");
        }
    })
    .await
    .expect("every partition reported");
}

/// Watches every SPU for a role of `topic` in its table; returns when
/// `expect` of them hold one, with the instant each was seen.
fn watch_for(
    spus: &[RunningSpu],
    topic: &str,
    expect: usize,
) -> impl Future<Output = Vec<Instant>> {
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut watchers = tokio::task::JoinSet::new();
    for spu in spus {
        let mut control = spu.control();
        control.borrow_and_update();
        let (roles, topic, seen_tx) = (spu.roles().clone(), topic.to_string(), seen_tx.clone());
        watchers.spawn(async move {
            loop {
                if roles.snapshot().topic(&topic).is_some() {
                    let _ = seen_tx.send(Instant::now());
                    return;
                }
                if control.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    async move {
        let mut at = Vec::with_capacity(expect);
        while at.len() < expect {
            let next = tokio::time::timeout(PATIENCE, seen.recv()).await;
            at.push(
                next.expect("the change reaches the SPUs")
                    .expect("watchers run"),
            );
        }
        watchers.abort_all();
        at
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    serde_json::json!({
        "samples": samples.len(),
        "p50_ms": ms(quantile(&samples, 0.50)),
        "p99_ms": ms(quantile(&samples, 0.99)),
        "max_ms": ms(*samples.last().unwrap_or(&Duration::ZERO)),
    })
}

/// Phase 1 on one store: returns its figures. Its files go into `keep`,
/// removed only once every phase is measured: deleting 100k files keeps
/// the disk (and the kernel) busy for a while after.
fn role_changes(
    runtime: &tokio::runtime::Runtime,
    store: &str,
    keep: &mut Vec<tempfile::TempDir>,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let sc_dir = dir.path().join("sc");
    let built = Instant::now();
    write_metadata(&sc_dir, SPUS, TOPICS, PARTITIONS_PER_TOPIC, round_robin);
    let etcd = (store == "etcd").then(mg_testkit::etcd::Etcd::start);
    let config = match &etcd {
        None => StoreConfig::Files,
        Some(etcd) => {
            let config =
                mg_sc::etcd::EtcdConfig::parse(&etcd.url(), "/mirror-guard/scale").unwrap();
            mg_sc::migrate::to_etcd(&sc_dir, &config, false).unwrap();
            StoreConfig::Etcd(config)
        }
    };
    let cluster = Arc::new(Cluster::open_with(&sc_dir, &config).unwrap());
    println!(
        "  {store}: {} partitions loaded in {:.1} s",
        cluster.partitions().len(),
        built.elapsed().as_secs_f64()
    );
    let remotes = remotes();
    let result = runtime.block_on(async {
        let private = mg_sc::serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
            .await
            .unwrap();
        let ids: Vec<i32> = (0..SPUS).map(|i| FIRST_SPU + i).collect();
        let started = Instant::now();
        let spus = start_spus(&ids, &dir.path().join("spus"), private.addr()).await;
        let per_spu = TOPICS * PARTITIONS_PER_TOPIC as usize / SPUS as usize;
        for spu in &spus {
            synced(spu, per_spu).await;
        }
        println!(
            "  {store}: {SPUS} SPUs registered and synced in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // The steady state is measured: every SPU's first report (the
        // offsets of its 500 partitions, 100k in all) is in before the
        // first change, which would otherwise meet that storm.
        reported(&cluster).await;

        let mut all_samples = Vec::new();
        let mut to_all = Vec::new();
        let mut commits = Vec::new();
        for round in 0..FAN_OUT_CHANGES {
            let name = format!("fan-{round:03}");
            let seen = watch_for(&spus, &name, SPUS as usize);
            let (cluster, topic, remotes) = (cluster.clone(), name.clone(), remotes.clone());
            let (asked, committed) = tokio::task::spawn_blocking(move || {
                let asked = Instant::now();
                cluster
                    .create_mirror_topic(&topic, &remotes, false)
                    .unwrap();
                (asked, Instant::now())
            })
            .await
            .unwrap();
            let at = seen.await;
            let delays: Vec<Duration> = at
                .iter()
                .map(|t| t.saturating_duration_since(committed))
                .collect();
            to_all.push(*delays.iter().max().unwrap());
            all_samples.extend(delays);
            commits.push(committed - asked);
        }
        let mut single = Vec::new();
        for round in 0..SINGLE_CHANGES {
            let name = format!("one-{round:03}");
            let seen = watch_for(&spus, &name, 1);
            let (cluster, topic) = (cluster.clone(), name.clone());
            let committed = tokio::task::spawn_blocking(move || {
                cluster.create_topic(&topic, 1).unwrap();
                Instant::now()
            })
            .await
            .unwrap();
            let at = seen.await;
            single.push(at[0].saturating_duration_since(committed));
        }
        for spu in spus {
            spu.shutdown().await;
        }
        private.shutdown().await;
        let result = serde_json::json!({
            "to_all_200": summary(to_all),
            "per_spu": summary(all_samples),
            "to_one": summary(single),
            "commit_of_201_writes": summary(commits),
        });
        println!("  {store}: {result}");
        result
    });
    drop(cluster);
    drop(etcd);
    keep.push(dir);
    result
}

/// An SC process on `sc_dir` (files).
struct ScProcess {
    child: Child,
    private: std::net::SocketAddr,
}

impl ScProcess {
    fn start(sc_dir: &Path) -> ScProcess {
        let base = mg_testkit::port_base();
        let (public, private) = (
            format!("127.0.0.1:{base}"),
            format!("127.0.0.1:{}", base + 1),
        );
        let mut child = Command::new(binary())
            .args([
                "sc",
                "--log-level",
                "warn",
                "--public",
                &public,
                "--private",
                &private,
            ])
            .arg("--data-dir")
            .arg(sc_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SC");
        // It prints its banner once it listens (after loading the metadata).
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains("listening"), "the SC did not start: {line:?}");
        ScProcess {
            child,
            private: private.parse().unwrap(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ScProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Phases 2 and 3 (their files go into `keep`, as in phase 1).
fn sc_process(
    runtime: &tokio::runtime::Runtime,
    keep: &mut Vec<tempfile::TempDir>,
) -> serde_json::Value {
    // 3: 200 SPUs on one SC of 100k partitions.
    let dir = tempfile::tempdir().unwrap();
    write_metadata(
        &dir.path().join("sc"),
        SPUS,
        TOPICS,
        PARTITIONS_PER_TOPIC,
        round_robin,
    );
    let sc = ScProcess::start(&dir.path().join("sc"));
    let loaded_kib = rss_kib_of(sc.pid());
    let fleet = runtime.block_on(async {
        let ids: Vec<i32> = (0..SPUS).map(|i| FIRST_SPU + i).collect();
        let spus = start_spus(&ids, &dir.path().join("spus"), sc.private).await;
        let per_spu = TOPICS * PARTITIONS_PER_TOPIC as usize / SPUS as usize;
        for spu in &spus {
            synced(spu, per_spu).await;
        }
        // Every SPU has reported its partitions' offsets once too.
        tokio::time::sleep(mg_spu::control::STATUS_INTERVAL * 3).await;
        let figures = serde_json::json!({
            "rss_loaded_kib": loaded_kib,
            "rss_serving_kib": rss_kib_of(sc.pid()),
            "peak_rss_kib": peak_rss_kib_of(sc.pid()),
        });
        for spu in spus {
            spu.shutdown().await;
        }
        figures
    });
    drop(sc);
    keep.push(dir);
    println!("  200 SPUs on one SC: {fleet}");

    // 2: one SPU leads all 100k partitions; it restarts and resyncs.
    let dir = tempfile::tempdir().unwrap();
    write_metadata(
        &dir.path().join("sc"),
        1,
        TOPICS,
        PARTITIONS_PER_TOPIC,
        |_| FIRST_SPU,
    );
    let sc = ScProcess::start(&dir.path().join("sc"));
    let all = TOPICS * PARTITIONS_PER_TOPIC as usize;
    let resync = runtime.block_on(async {
        let spu_dir = dir.path().join("spus");
        let first = start_spus(&[FIRST_SPU], &spu_dir, sc.private).await;
        let started = Instant::now();
        synced(&first[0], all).await;
        let first_sync = started.elapsed();
        for spu in first {
            spu.shutdown().await;
        }
        let before_kib = rss_kib_of(sc.pid());
        let mut resyncs = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let again = start_spus(&[FIRST_SPU], &spu_dir, sc.private).await;
            synced(&again[0], all).await;
            resyncs.push(started.elapsed());
            for spu in again {
                spu.shutdown().await;
            }
        }
        serde_json::json!({
            "partitions": all,
            "first_sync_ms": ms(first_sync),
            "resync": summary(resyncs),
            "rss_before_kib": before_kib,
            "peak_rss_kib": peak_rss_kib_of(sc.pid()),
        })
    });
    drop(sc);
    keep.push(dir);
    println!("  resync of {all} partitions to one SPU: {resync}");
    serde_json::json!({ "fleet": fleet, "resync": resync })
}

fn main() {
    if !support::should_run("control_scale", &[binary()]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("control_scale: {SPUS} SPUs, {TOPICS} x {PARTITIONS_PER_TOPIC} partitions");
    let mut keep = Vec::new();
    let files = role_changes(&runtime, "files", &mut keep);
    let etcd = role_changes(&runtime, "etcd", &mut keep);
    let process = sc_process(&runtime, &mut keep);
    let out = serde_json::json!({
        "spus": SPUS,
        "partitions": TOPICS * PARTITIONS_PER_TOPIC as usize,
        "files": files,
        "etcd": etcd,
        "sc_process": process,
    });
    let path = support::target_dir().join("control_scale.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    println!("control_scale: written to {}", path.display());
}
