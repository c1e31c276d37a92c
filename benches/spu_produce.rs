//! Produce through the real SPU process over loopback.
//!
//! Starts `target/release/mirror-guard spu` (build it first: `make bench`
//! does), loads it with 100-byte records in ~16 KiB batches, and measures:
//!
//! - throughput (records/s, MB/s of record values) with the guard on and
//!   off, alternating runs in the same session (guard off is the same code
//!   built with the `bench-hooks` feature, run with `--bench-disable-guard`:
//!   the production binary has no such switch);
//! - round-trip latency (p50, p99) of produce requests the guard rejects;
//! - the server process's peak resident memory (VmHWM).
//!
//! - the same produce figure taken through the official `fluvio` 0.50.1
//!   producer, against a local cluster (SC + one SPU) started by the binary.
//!
//! Results go to stdout and to `target/spu-bench.json` for `benches/report.py`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{Server, binary, response, unguarded_binary};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const RECORD_BYTES: usize = 100;
const RECORDS_PER_BATCH: usize = 150; // 150 x (100 + 7 bytes of record framing) ~ 16 KiB
const CONNECTIONS: usize = 2;
const IN_FLIGHT: usize = 8;
const RUN: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;
const LATENCY_SAMPLES: usize = 5000;

fn start(guard: bool) -> Server {
    let leads: Vec<String> = ["bench:0", "bench:1", "mirror:0=home:edge1"]
        .map(String::from)
        .to_vec();
    if guard {
        Server::start(&binary(), &leads, &[])
    } else {
        Server::start(&unguarded_binary(), &leads, &["--bench-disable-guard"])
    }
}

fn request(topic: &str, partition: u32, correlation_id: i32) -> Bytes {
    support::request(
        topic,
        partition,
        RECORDS_PER_BATCH,
        RECORD_BYTES,
        false,
        correlation_id,
    )
}

/// Records per second written by CONNECTIONS pipelining clients for RUN,
/// and the records written.
async fn throughput(addr: &str) -> (f64, u64) {
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let frame = request("bench", (c % 2) as u32, 1);
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut stream = BufReader::new(stream);
            let mut done = 0u64;
            for _ in 0..IN_FLIGHT {
                stream.get_mut().write_all(&frame).await.expect("send");
            }
            while Instant::now() < deadline {
                assert_eq!(response(&mut stream).await, 0, "a produce failed");
                done += 1;
                stream.get_mut().write_all(&frame).await.expect("send");
            }
            for _ in 0..IN_FLIGHT {
                assert_eq!(response(&mut stream).await, 0);
                done += 1;
            }
            done
        }));
    }
    let start = Instant::now();
    let mut batches = 0;
    for task in tasks {
        batches += task.await.expect("client");
    }
    let records = batches * RECORDS_PER_BATCH as u64;
    (records as f64 / start.elapsed().as_secs_f64(), records)
}

/// Round trips of rejected requests, one at a time.
async fn rejected_latency(addr: &str) -> (Duration, Duration) {
    let frame = request("mirror", 0, 1);
    let mut stream = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    stream.get_mut().set_nodelay(true).expect("nodelay");
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES + 500 {
        let start = Instant::now();
        stream.get_mut().write_all(&frame).await.expect("send");
        assert_eq!(response(&mut stream).await, 11003);
        if i >= 500 {
            samples.push(start.elapsed()); // the first 500 warm up
        }
    }
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Records per second through the official producer, to a local cluster.
fn official_client_rate() -> f64 {
    use fluvio::metadata::topic::TopicSpec;
    use fluvio::{Fluvio, FluvioClusterConfig, RecordKey, TopicProducerConfigBuilder};
    const RECORDS: usize = 500_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let base = mg_testkit::port_base();
    let run = |args: &[&str]| {
        let status = Command::new(binary())
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status();
        assert!(
            status.expect("run mirror-guard").success(),
            "mirror-guard {args:?}"
        );
    };
    run(&[
        "cluster",
        "start",
        "--spus",
        "1",
        "--base-port",
        &base.to_string(),
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rate = runtime.block_on(async {
        let fluvio =
            Fluvio::connect_with_config(&FluvioClusterConfig::new(format!("127.0.0.1:{base}")))
                .await
                .expect("connect");
        fluvio
            .admin()
            .await
            .create(
                "bench".to_string(),
                false,
                TopicSpec::new_computed(1, 1, None),
            )
            .await
            .expect("topic");
        let config = TopicProducerConfigBuilder::default()
            .batch_size(16 * 1024)
            .linger(Duration::from_millis(10))
            .build()
            .expect("producer config");
        let producer = fluvio
            .topic_producer_with_config("bench", config)
            .await
            .expect("producer");
        let value = vec![b'r'; RECORD_BYTES];
        let start = Instant::now();
        let mut last = None;
        for _ in 0..RECORDS {
            last = Some(
                producer
                    .send(RecordKey::NULL, value.clone())
                    .await
                    .expect("send"),
            );
        }
        producer.flush().await.expect("flush");
        last.expect("sent")
            .wait()
            .await
            .expect("the last record was accepted");
        RECORDS as f64 / start.elapsed().as_secs_f64()
    });
    run(&["cluster", "shutdown"]);
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !support::should_run("spu_produce", &[binary(), unguarded_binary()]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut on, mut off, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for guard in [true, false] {
            let server = start(guard);
            let before = server.cpu_time();
            let (rate, records) = runtime.block_on(throughput(&server.addr));
            // Server CPU nanoseconds per record: steadier than wall-clock rate
            // on a shared machine, since it ignores time spent descheduled.
            let cpu = (server.cpu_time() - before).as_nanos() as f64 / records as f64;
            rss.push(server.peak_rss_kib());
            println!(
                "round {round}: guard {:<3} {:>10.0} records/s, server CPU {cpu:.1} ns/record",
                if guard { "on" } else { "off" },
                rate
            );
            if guard {
                on.push(rate);
                cpu_on.push(cpu);
            } else {
                off.push(rate);
                cpu_off.push(cpu);
            }
        }
    }
    let official = official_client_rate();
    println!("official fluvio producer, to a local cluster: {official:>10.0} records/s");
    let server = start(true);
    let (p50, p99) = runtime.block_on(rejected_latency(&server.addr));
    rss.push(server.peak_rss_kib());
    drop(server);

    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        (hi - lo) / hi * 100.0
    };
    let (spread_on, spread_off) = (spread(&on), spread(&off));
    let (on, off) = (median(on), median(off));
    let (cpu_spread_on, cpu_spread_off) = (spread(&cpu_on), spread(&cpu_off));
    let (cpu_on, cpu_off) = (median(cpu_on), median(cpu_off));
    let mb = |records: f64| records * RECORD_BYTES as f64 / 1e6;
    let peak_rss_kib = rss.iter().copied().max().unwrap_or(0);
    println!(
        "\nproduce over loopback, {RECORD_BYTES}-byte records, {RECORDS_PER_BATCH} per batch, {CONNECTIONS} connections x {IN_FLIGHT} in flight"
    );
    println!("  guard on : {on:>12.0} records/s  {:>8.1} MB/s", mb(on));
    println!("  guard off: {off:>12.0} records/s  {:>8.1} MB/s", mb(off));
    println!(
        "  guard cost on the accepted path: {:+.2}% of the median (run-to-run spread: on {spread_on:.1}%, off {spread_off:.1}%)",
        (off - on) / off * 100.0
    );
    println!(
        "  server CPU per record: guard on {cpu_on:.1} ns, off {cpu_off:.1} ns: guard cost {:+.2}% (spread on {cpu_spread_on:.1}%, off {cpu_spread_off:.1}%)",
        (cpu_on - cpu_off) / cpu_off * 100.0
    );
    println!("  rejected request round trip: p50 {p50:?}, p99 {p99:?}");
    println!("  server peak RSS: {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    let json = format!(
        "{{\"records_per_sec_guard_on\":{on:.0},\"records_per_sec_guard_off\":{off:.0},\"mb_per_sec_guard_on\":{:.2},\"spread_on_pct\":{spread_on:.1},\"spread_off_pct\":{spread_off:.1},\"cpu_ns_per_record_on\":{cpu_on:.2},\"cpu_ns_per_record_off\":{cpu_off:.2},\"cpu_spread_on_pct\":{cpu_spread_on:.1},\"cpu_spread_off_pct\":{cpu_spread_off:.1},\"rejected_p50_us\":{:.1},\"rejected_p99_us\":{:.1},\"peak_rss_kib\":{peak_rss_kib},\"official_client_records_per_sec\":{official:.0}}}\n",
        mb(on),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    let out = binary()
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("spu-bench.json"));
    if let Some(out) = out {
        let _ = std::fs::write(out, json);
    }
}
