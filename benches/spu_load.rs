//! The SPU under concurrent load, as a real process over loopback.
//!
//! 1. **Commit scaling**: 1, 8 and 64 connections, each pipelining 4 small
//!    requests (one 100-byte record) across 8 partitions, with acks = -1
//!    (read committed: answered after a sync that covers the records; the
//!    default `--fsync on-commit`) and with acks = 1, in one run:
//!    requests/s, p99 round trip, server CPU per request.
//! 2. **Batches**: the produce bench's shape (150 records of 100 bytes per
//!    request, 2 connections x 8 in flight, acks = 1): records/s and server
//!    CPU per record.
//! 3. **Head-of-line blocking**: single-record requests, one at a time, on
//!    one connection, while 8 other connections push 1 MiB batches with
//!    `--fsync always`, against the same with the heavy connections idle:
//!    p50 and p99 of the light requests, and the heavy connections' MiB/s
//!    (what the store's sync order, which puts small commits first, costs
//!    them). Busy twice: as the SPU runs by default, and with
//!    `--flush-target-us 1000`, which paces the big syncs for the small
//!    commits.
//!
//! For case 3 it also measures the disk's own floor, with no SPU: one
//! thread appending 100 bytes and syncing, idle and beside 8 threads
//! appending 1 MiB and syncing.
//!
//! Each case runs against this build and, when `make bench-baseline` has
//! built it, against the last commit before the reshape (same machine, same
//! run). Results go to stdout and to `target/spu-load.json`. With
//! `SPU_LOAD_REFERENCE=<binary>` it measures that binary too, as
//! "reference" (say, a build of the commit before a change), and
//! `SPU_LOAD_CASES=commit,batches,hol,disk` (any subset) runs only the cases
//! named.

mod support;

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Server, baseline_binary, binary, quantile, request, response};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const RUN: Duration = Duration::from_secs(3);
const PARTITIONS: u32 = 8;
const PIPELINE: usize = 4;
const HEAVY_CONNECTIONS: u32 = 8;
/// The small-commit latency target of case 3's paced run
/// (`--flush-target-us`).
const FLUSH_TARGET_US: u64 = 1000;

/// The runs of case 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hol {
    /// Light requests alone.
    Idle,
    /// Beside the heavy connections, the SPU as configured by default.
    Busy,
    /// Beside the heavy connections, big syncs paced for small commits
    /// (`--flush-target-us FLUSH_TARGET_US`).
    Paced,
}

/// One load figure.
#[derive(Debug)]
struct Load {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    cpu_us_per_request: f64,
}

impl Load {
    /// The figure of `latencies` measured over `elapsed`, with the server
    /// using `cpu` meanwhile.
    fn from(mut latencies: Vec<Duration>, elapsed: Duration, cpu: Duration) -> Load {
        latencies.sort_unstable();
        Load {
            requests_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile(&latencies, 0.5),
            p99: quantile(&latencies, 0.99),
            cpu_us_per_request: cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        }
    }
}

/// `connections` clients each keeping `pipeline` requests of `records`
/// 100-byte records in flight for RUN.
async fn load(
    server: &Server,
    connections: u32,
    pipeline: usize,
    records: usize,
    acks_all: bool,
) -> Load {
    let deadline = Instant::now() + RUN;
    let before = server.cpu_time();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let frame = request("load", c % PARTITIONS, records, 100, acks_all, 1);
        let addr = server.addr.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut stream = BufReader::new(stream);
            let mut sent = VecDeque::with_capacity(pipeline);
            let mut latencies = Vec::new();
            for _ in 0..pipeline {
                stream.get_mut().write_all(&frame).await.expect("send");
                sent.push_back(Instant::now());
            }
            while let Some(at) = sent.pop_front() {
                assert_eq!(response(&mut stream).await, 0, "a produce failed");
                latencies.push(at.elapsed());
                if Instant::now() < deadline {
                    stream.get_mut().write_all(&frame).await.expect("send");
                    sent.push_back(Instant::now());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    Load::from(latencies, start.elapsed(), server.cpu_time() - before)
}

/// Light single-record requests, one at a time, for RUN; with `heavy`,
/// HEAVY_CONNECTIONS others push 1 MiB batches meanwhile. Returns the light
/// requests' figure and the heavy connections' MiB/s.
async fn head_of_line(server: &Server, heavy: bool) -> (Load, f64) {
    let deadline = Instant::now() + RUN;
    let mut pushers = Vec::new();
    if heavy {
        // 1 MiB: 1024 records of 1000 bytes.
        for c in 0..HEAVY_CONNECTIONS {
            let frame = request("heavy", c, 1024, 1000, false, 1);
            let addr = server.addr.clone();
            pushers.push(tokio::spawn(async move {
                let stream = TcpStream::connect(&addr).await.expect("connect");
                let mut stream = BufReader::new(stream);
                let mut in_flight = 0;
                let mut answered = 0u64;
                for _ in 0..2 {
                    stream.get_mut().write_all(&frame).await.expect("send");
                    in_flight += 1;
                }
                while in_flight > 0 {
                    assert_eq!(response(&mut stream).await, 0, "a heavy produce failed");
                    in_flight -= 1;
                    answered += 1;
                    if Instant::now() < deadline {
                        stream.get_mut().write_all(&frame).await.expect("send");
                        in_flight += 1;
                    }
                }
                answered
            }));
        }
    }
    let frame = request("light", 0, 1, 100, false, 1);
    let addr = server.addr.clone();
    let before = server.cpu_time();
    let start = Instant::now();
    // The light client runs on a thread of its own, so that the heavy
    // pushers' tasks on the bench's two workers cannot delay its polls:
    // the figure is the SPU's, not the bench's task scheduling.
    let light = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut stream = BufReader::new(stream);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let at = Instant::now();
                stream.get_mut().write_all(&frame).await.expect("send");
                assert_eq!(response(&mut stream).await, 0, "a light produce failed");
                latencies.push(at.elapsed());
            }
            latencies
        })
    });
    let latencies = tokio::task::spawn_blocking(move || light.join())
        .await
        .expect("join")
        .expect("light client");
    let elapsed = start.elapsed();
    let mut heavy_mib = 0;
    for pusher in pushers {
        heavy_mib += pusher.await.expect("pusher");
    }
    let heavy_rate = heavy_mib as f64 / start.elapsed().as_secs_f64();
    (
        Load::from(latencies, elapsed, server.cpu_time() - before),
        heavy_rate,
    )
}

/// The disk's own floor for case 3, with no SPU: one thread appends 100
/// bytes and syncs them in a loop for RUN, idle and then while 8 threads
/// append 1 MiB and sync, each to a file of its own, in a temp dir on the
/// same file system as the SPUs' data. Returns (idle, busy).
fn disk_floor() -> (Load, Load) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("temp dir");
    let light = |path: &Path| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("light file");
        let mut latencies = Vec::new();
        let start = Instant::now();
        while start.elapsed() < RUN {
            let at = Instant::now();
            file.write_all(&[b'l'; 100]).expect("write");
            file.sync_data().expect("sync");
            latencies.push(at.elapsed());
        }
        Load::from(latencies, RUN, Duration::ZERO)
    };
    let idle = light(&dir.path().join("idle"));
    let stop = AtomicBool::new(false);
    let busy = std::thread::scope(|scope| {
        for i in 0..HEAVY_CONNECTIONS {
            let (stop, path) = (&stop, dir.path().join(format!("heavy-{i}")));
            scope.spawn(move || {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("heavy file");
                let block = vec![b'h'; 1 << 20];
                while !stop.load(Ordering::Relaxed) {
                    file.write_all(&block).expect("write");
                    file.sync_data().expect("sync");
                }
            });
        }
        let busy = light(&dir.path().join("busy"));
        stop.store(true, Ordering::Relaxed);
        busy
    });
    (idle, busy)
}

fn leads(topics: &[(&str, u32)]) -> Vec<String> {
    topics
        .iter()
        .flat_map(|(topic, n)| (0..*n).map(move |p| format!("{topic}:{p}")))
        .collect()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn json(load: &Load) -> String {
    format!(
        "{{\"rps\":{:.0},\"p50_us\":{:.0},\"p99_us\":{:.0},\"cpu_us\":{:.2}}}",
        load.requests_per_sec,
        us(load.p50),
        us(load.p99),
        load.cpu_us_per_request
    )
}

/// Whether `SPU_LOAD_CASES` (all cases when unset) names `case`.
fn wanted(case: &str) -> bool {
    std::env::var("SPU_LOAD_CASES").map_or(true, |cases| cases.split(',').any(|c| c == case))
}

/// Runs the wanted cases against `bin`; returns their JSON.
fn measure(runtime: &tokio::runtime::Runtime, name: &str, bin: &Path) -> String {
    let mut commit = Vec::new();
    let connection_counts: &[u32] = if wanted("commit") { &[1, 8, 64] } else { &[] };
    for &connections in connection_counts {
        for acks_all in [true, false] {
            let server = Server::start(bin, &leads(&[("load", PARTITIONS)]), &[]);
            let load = runtime.block_on(load(&server, connections, PIPELINE, 1, acks_all));
            let acks = if acks_all { "-1" } else { "1" };
            println!(
                "[{name}] {connections:>2} connections, acks {acks:>2}: {:>8.0} requests/s, p50 {:>7.0} us, p99 {:>7.0} us, server CPU {:>6.1} us/request",
                load.requests_per_sec,
                us(load.p50),
                us(load.p99),
                load.cpu_us_per_request
            );
            commit.push(format!(
                "\"c{connections}_acks{}\":{}",
                if acks_all { "all" } else { "one" },
                json(&load)
            ));
        }
    }
    // The produce bench's shape (spu_produce): 150 records of 100 bytes per
    // request, 2 connections x 8 in flight, acks = 1.
    let mut batches = String::new();
    if wanted("batches") {
        let server = Server::start(bin, &leads(&[("load", PARTITIONS)]), &[]);
        let load = runtime.block_on(load(&server, 2, 8, 150, false));
        let records_per_sec = load.requests_per_sec * 150.0;
        let cpu_ns_per_record = load.cpu_us_per_request * 1000.0 / 150.0;
        println!(
            "[{name}] 16 KiB batches, 2 connections x 8 in flight: {records_per_sec:>10.0} records/s, server CPU {cpu_ns_per_record:.0} ns/record"
        );
        batches = format!(
            "\"records_per_sec\":{records_per_sec:.0},\"cpu_ns_per_record\":{cpu_ns_per_record:.1}"
        );
    }
    let mut hol = Vec::new();
    // The paced run needs `--flush-target-us`, which older builds (a
    // reference, the baseline) do not have.
    let hol_cases: &[Hol] = match (wanted("hol"), name) {
        (false, _) => &[],
        (true, "after") => &[Hol::Idle, Hol::Busy, Hol::Paced],
        (true, _) => &[Hol::Idle, Hol::Busy],
    };
    let target = FLUSH_TARGET_US.to_string();
    for &case in hol_cases {
        let mut args = vec!["--fsync", "always"];
        if case == Hol::Paced {
            args.extend(["--flush-target-us", target.as_str()]);
        }
        let server = Server::start(
            bin,
            &leads(&[("light", 1), ("heavy", HEAVY_CONNECTIONS)]),
            &args,
        );
        let (load, heavy_rate) = runtime.block_on(head_of_line(&server, case != Hol::Idle));
        // (JSON key of the light figure, of the heavy MiB/s, what to print)
        let (label, heavy_label, shown) = match case {
            Hol::Idle => ("idle", None, "idle".to_string()),
            Hol::Busy => ("busy", Some("heavy_mib_per_sec"), "busy".to_string()),
            Hol::Paced => (
                "busy_paced",
                Some("paced_heavy_mib_per_sec"),
                format!("busy, --flush-target-us {FLUSH_TARGET_US}"),
            ),
        };
        println!(
            "[{name}] light requests, heavy connections {shown}: p50 {:>7.0} us, p99 {:>7.0} us; heavy {heavy_rate:.0} MiB/s",
            us(load.p50),
            us(load.p99)
        );
        hol.push(format!("\"{label}\":{}", json(&load)));
        if let Some(heavy_label) = heavy_label {
            hol.push(format!("\"{heavy_label}\":{heavy_rate:.1}"));
        }
    }
    format!(
        "\"{name}\":{{\"commit\":{{{}}},\"hol\":{{{}}},\"batches\":{{{batches}}}}}",
        commit.join(","),
        hol.join(",")
    )
}

fn main() {
    if !support::should_run("spu_load", &[binary()]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut parts = Vec::new();
    if wanted("disk") {
        let (idle, busy) = disk_floor();
        println!(
            "[disk] 100-byte append + sync, no SPU: idle p50 {:>7.0} us, p99 {:>7.0} us; with 8 x 1 MiB writers p50 {:>7.0} us, p99 {:>7.0} us",
            us(idle.p50),
            us(idle.p99),
            us(busy.p50),
            us(busy.p99)
        );
        parts.push(format!(
            "\"disk\":{{\"idle\":{},\"busy\":{}}}",
            json(&idle),
            json(&busy)
        ));
    }
    parts.push(measure(&runtime, "after", &binary()));
    if let Some(reference) = std::env::var_os("SPU_LOAD_REFERENCE") {
        parts.push(measure(&runtime, "reference", Path::new(&reference)));
    }
    match baseline_binary() {
        Some(before) => parts.push(measure(&runtime, "before", &before)),
        None => println!("(no baseline binary: `make bench-baseline` builds the pre-reshape one)"),
    }
    let out = support::target_dir().join("spu-load.json");
    let _ = std::fs::write(out, format!("{{{}}}\n", parts.join(",")));
}
