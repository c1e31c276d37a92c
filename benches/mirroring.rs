//! Mirroring between clusters, as real processes over loopback: a home and
//! two edges started with `mirror-guard cluster start`, paired with
//! `remote export` / `home connect`, loaded with framed produce requests.
//!
//! 1. **Throughput**, 100-byte and 1 KiB records: one load generator (2
//!    connections x 8 requests in flight, ~16 KiB per request, acks = 1)
//!    produces at edge1 into its mirror partition. Reference: the rate at
//!    which the edge SPU acknowledges it. Measured: the rate at which the
//!    same records become stored at the home (from the first request to
//!    the home holding every byte the edge holds).
//! 2. **CPU**: home SPU CPU per mirrored record during (1), against home SPU
//!    CPU per record when the same load generator produces the same
//!    records straight into a plain topic at the home.
//! 3. **Lag**: at half the rate of (1), one request at a time paced, from
//!    each acknowledgement at the edge to its bytes being stored (readable)
//!    at the home: p50 and p99. The home's log is watched every 0.5 ms.
//! 4. **Memory**: home SPU peak RSS while both edges stream 1 KiB records at
//!    once, against its RSS before any load.
//!
//! Results go to stdout and to `target/mirroring.json`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{binary, quantile, request, response};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Requests per throughput run.
const REQUESTS: usize = 4000;
/// Bytes of records per request, about.
const REQUEST_BYTES: usize = 16 * 1024;
const LAG_RUN: Duration = Duration::from_secs(3);

/// A local cluster of real processes.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    sc: String,
    spu_addr: String,
    spu_pid: u32,
}

impl Cluster {
    /// A cluster; `plaintext`: mirror traffic without TLS let in.
    fn start(bin: &Path, plaintext: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = mg_testkit::port_base().to_string();
        let out = Command::new(bin)
            .args(["cluster", "start", "--spus", "1", "--base-port", &base])
            .args(plaintext.then_some("--insecure-mirroring"))
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("cluster start");
        assert!(out.status.success(), "cluster start: {}", text(&out));
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("cluster.json")).unwrap(),
        )
        .unwrap();
        Cluster {
            bin: bin.to_path_buf(),
            sc: file["sc_public"].as_str().unwrap().to_string(),
            spu_addr: file["spus"][0]["public"].as_str().unwrap().to_string(),
            spu_pid: file["pids"][1].as_u64().unwrap() as u32,
            dir,
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env("MIRROR_GUARD_SC", &self.sc)
            .output()
            .expect("mirror-guard");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Bytes stored for a partition (its log files).
    fn stored(&self, topic: &str, partition: u32) -> u64 {
        let dir = self
            .dir
            .path()
            .join("spu-5001")
            .join(format!("{topic}-{partition}"));
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    fn cpu(&self) -> Duration {
        support::cpu_time_of(self.spu_pid)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .args(["cluster", "shutdown", "--data-dir"])
            .arg(self.dir.path())
            .output();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// 2 connections x 8 in flight, `requests` requests in all, to
/// `topic`/`partition` at `addr`; returns when all are acknowledged.
async fn push(
    addr: &str,
    topic: &str,
    partition: u32,
    records: usize,
    size: usize,
    requests: usize,
) {
    let frame = request(topic, partition, records, size, false, 1);
    let mut tasks = Vec::new();
    for c in 0..2 {
        let (frame, addr) = (frame.clone(), addr.to_string());
        let mine = requests / 2 + (c * (requests % 2));
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut stream = BufReader::new(stream);
            let (mut sent, mut in_flight) = (0, 0);
            while sent < mine || in_flight > 0 {
                while in_flight < 8 && sent < mine {
                    stream.get_mut().write_all(&frame).await.expect("send");
                    sent += 1;
                    in_flight += 1;
                }
                assert_eq!(response(&mut stream).await, 0, "a produce failed");
                in_flight -= 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
}

struct Throughput {
    produce_rps: f64,
    mirror_rps: f64,
    cpu_ns_mirrored: f64,
    cpu_ns_produced: f64,
}

fn throughput(
    rt: &tokio::runtime::Runtime,
    home: &Cluster,
    edge: &Cluster,
    size: usize,
) -> Throughput {
    let records = (REQUEST_BYTES / size).max(1);
    let total = (records * REQUESTS) as f64;
    let topic = format!("m{size}");
    let cpu_before = home.cpu();
    let start = Instant::now();
    rt.block_on(push(&edge.spu_addr, &topic, 0, records, size, REQUESTS));
    let acked = start.elapsed();
    let want = edge.stored(&topic, 0);
    wait_until("the home to hold every mirrored byte", || {
        home.stored(&topic, 0) >= want
    });
    let mirrored = start.elapsed();
    let cpu_mirrored = home.cpu() - cpu_before;
    assert_eq!(
        home.stored(&topic, 0),
        want,
        "the home holds exactly what the edge holds"
    );
    // The same records, produced straight into a plain topic at the home.
    let cpu_before = home.cpu();
    rt.block_on(push(
        &home.spu_addr,
        &format!("p{size}"),
        0,
        records,
        size,
        REQUESTS,
    ));
    let cpu_produced = home.cpu() - cpu_before;
    Throughput {
        produce_rps: total / acked.as_secs_f64(),
        mirror_rps: total / mirrored.as_secs_f64(),
        cpu_ns_mirrored: cpu_mirrored.as_secs_f64() * 1e9 / total,
        cpu_ns_produced: cpu_produced.as_secs_f64() * 1e9 / total,
    }
}

/// Paced requests at `requests_per_sec`, one at a time; the lag from each
/// acknowledgement at the edge to its bytes stored at the home.
fn lag(
    rt: &tokio::runtime::Runtime,
    home: &Cluster,
    edge: &Cluster,
    requests_per_sec: f64,
) -> Vec<Duration> {
    let (topic, records, size) = ("lag", REQUEST_BYTES / 100, 100);
    // One request first, to learn how many bytes each stores.
    rt.block_on(push(&edge.spu_addr, topic, 0, records, size, 1));
    let per_request = edge.stored(topic, 0);
    wait_until("the first lag request at home", || {
        home.stored(topic, 0) == per_request
    });
    // A watcher samples the home's log while requests go out.
    let stop = Arc::new(AtomicBool::new(false));
    let watch_dir = home.dir.path().join("spu-5001").join(format!("{topic}-0"));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(Instant, u64)> = Vec::new();
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let size: u64 = std::fs::read_dir(&watch_dir)
                    .map(|es| {
                        es.filter_map(|e| e.ok())
                            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                if size != last {
                    seen.push((Instant::now(), size));
                    last = size;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            seen
        })
    };
    let interval = Duration::from_secs_f64(1.0 / requests_per_sec);
    // Requests go out on a fixed schedule, whatever the answers do (so the
    // rate is the one asked for); answers are read and timed beside it.
    let acks: Vec<Instant> = rt.block_on(async {
        let frame = request(topic, 0, records, size, false, 1);
        let stream = TcpStream::connect(&edge.spu_addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, mut write) = stream.into_split();
        let sender = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = Instant::now() + LAG_RUN;
            let mut sent = 0usize;
            while Instant::now() < end {
                ticker.tick().await;
                write.write_all(&frame).await.expect("send");
                sent += 1;
            }
            (sent, write)
        });
        // Answers are timed by a task of their own (reads are not
        // cancelled halfway), until every request sent is answered.
        let (timed, mut answers) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut read = BufReader::new(read);
            loop {
                assert_eq!(support::response_of(&mut read).await, 0);
                if timed.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
        let (sent, _write) = sender.await.expect("sender");
        let mut acks = Vec::with_capacity(sent);
        while acks.len() < sent {
            acks.push(answers.recv().await.expect("an answer per request"));
        }
        reader.abort();
        acks
    });
    let total = per_request * (acks.len() as u64 + 1);
    wait_until("every lag request at home", || {
        home.stored(topic, 0) >= total
    });
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("watcher");
    let mut lags: Vec<Duration> = acks
        .iter()
        .enumerate()
        .map(|(i, acked)| {
            let needed = per_request * (i as u64 + 2);
            let at = seen
                .iter()
                .find(|(_, size)| *size >= needed)
                .map(|(at, _)| *at)
                .unwrap_or_else(Instant::now);
            at.saturating_duration_since(*acked)
        })
        .collect();
    lags.sort_unstable();
    lags
}

fn pair(home: &Cluster, edge: &Cluster, id: &str, plaintext: bool) {
    home.cli(&["remote", "register", id]);
    let file = home.dir.path().join(format!("{id}.json"));
    // With no CA there, the export carries no certificate: plaintext.
    let tls = match plaintext {
        false => home.dir.path().join("tls"),
        true => home.dir.path().join("no-ca"),
    };
    home.cli(&[
        "remote",
        "export",
        id,
        "--file",
        file.to_str().unwrap(),
        "--tls-dir",
        tls.to_str().unwrap(),
    ]);
    edge.cli(&["home", "connect", "--file", file.to_str().unwrap()]);
}

/// Every measurement, over mutual TLS or (`plaintext`) without; returns
/// the JSON fields.
fn run(bin: &Path, rt: &tokio::runtime::Runtime, plaintext: bool) -> Vec<String> {
    let mode = if plaintext { "plain" } else { "tls" };
    let home = Cluster::start(bin, plaintext);
    let edge1 = Cluster::start(bin, plaintext);
    let edge2 = Cluster::start(bin, plaintext);
    pair(&home, &edge1, "edge1", plaintext);
    pair(&home, &edge2, "edge2", plaintext);
    let remotes = home.dir.path().join("remotes.json");
    std::fs::write(&remotes, "[\"edge1\",\"edge2\"]").unwrap();
    for topic in ["m100", "m1024", "lag", "rss"] {
        home.cli(&[
            "topic",
            "create",
            topic,
            "--mirror-apply",
            remotes.to_str().unwrap(),
        ]);
    }
    for topic in ["p100", "p1024"] {
        home.cli(&["topic", "create", topic]);
    }
    for edge in [&edge1, &edge2] {
        wait_until("the edge's copies", || {
            let list = edge.cli(&["topic", "list"]);
            ["m100", "m1024", "lag", "rss"]
                .iter()
                .all(|t| list.contains(t))
        });
    }
    let idle_rss = support::rss_kib_of(home.spu_pid);

    // 4. Two remotes streaming 1 KiB records at once.
    rt.block_on(async {
        let a = push(&edge1.spu_addr, "rss", 0, 16, 1024, REQUESTS);
        let b = push(&edge2.spu_addr, "rss", 0, 16, 1024, REQUESTS);
        tokio::join!(a, b);
    });
    let (want1, want2) = (edge1.stored("rss", 0), edge2.stored("rss", 0));
    wait_until("both remotes mirrored", || {
        home.stored("rss", 0) >= want1 && home.stored("rss", 1) >= want2
    });
    let peak_rss = support::peak_rss_kib_of(home.spu_pid);
    println!(
        "[mirroring {mode}] home SPU RSS: {idle_rss} KiB before load, peak {peak_rss} KiB with two remotes streaming 1 KiB records ({:.2}x)",
        peak_rss as f64 / idle_rss.max(1) as f64
    );

    let mut parts = vec![format!(
        "\"rss\":{{\"idle_kib\":{idle_rss},\"peak_kib\":{peak_rss}}}"
    )];
    let mut rate_100 = 0.0;
    for size in [100, 1024] {
        let t = throughput(rt, &home, &edge1, size);
        if size == 100 {
            rate_100 = t.produce_rps;
        }
        println!(
            "[mirroring {mode}] {size:>4}-byte records: edge produce {:>9.0} records/s, mirrored to home {:>9.0} records/s ({:.2}x); home CPU {:.0} ns/mirrored record vs {:.0} ns/produced record ({:.2}x)",
            t.produce_rps,
            t.mirror_rps,
            t.mirror_rps / t.produce_rps,
            t.cpu_ns_mirrored,
            t.cpu_ns_produced,
            t.cpu_ns_mirrored / t.cpu_ns_produced
        );
        parts.push(format!(
            "\"r{size}\":{{\"produce_rps\":{:.0},\"mirror_rps\":{:.0},\"cpu_ns_mirrored\":{:.1},\"cpu_ns_produced\":{:.1}}}",
            t.produce_rps, t.mirror_rps, t.cpu_ns_mirrored, t.cpu_ns_produced
        ));
    }
    // 3. Lag at half the 100-byte rate, in requests.
    let records = (REQUEST_BYTES / 100) as f64;
    let half = rate_100 / records / 2.0;
    let lags = lag(rt, &home, &edge1, half);
    let (p50, p90, p99) = (
        quantile(&lags, 0.5),
        quantile(&lags, 0.9),
        quantile(&lags, 0.99),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "[mirroring {mode}] lag, paced at up to {half:.0} requests/s of {records} records (half the produce rate), {} requests: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(lags.last().copied().unwrap_or_default())
    );
    parts.push(format!(
        "\"lag\":{{\"requests_per_sec\":{half:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"samples\":{}}}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lags.len()
    ));
    parts
}

fn main() {
    let bin = binary();
    if !support::should_run("mirroring", std::slice::from_ref(&bin)) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut parts = Vec::new();
    for plaintext in [false, true] {
        let mode = if plaintext { "plain" } else { "tls" };
        parts.push(format!(
            "\"{mode}\":{{{}}}",
            run(&bin, &rt, plaintext).join(",")
        ));
    }
    let out = support::target_dir().join("mirroring.json");
    let _ = std::fs::write(out, format!("{{{}}}\n", parts.join(",")));
}
