//! What the process benchmarks share: the SPU as a real process, its CPU
//! time and peak memory from /proc, produce frames and their answers.

#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use mg_testkit::{ProduceSpec, framed};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpStream;

/// A `mirror-guard spu` process on an ephemeral loopback port.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin` as an SPU leading `leads`, with `extra` arguments.
    pub fn start(bin: &Path, leads: &[String], extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(bin);
        command.args([
            "spu",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--data-dir",
        ]);
        command.arg(dir.path());
        for lead in leads {
            command.args(["--lead", lead]);
        }
        command.args(extra);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `make bench`)", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("banner");
        let addr = line.trim().rsplit(' ').next().expect("address").to_string();
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.child.id())
    }

    /// Peak resident set size of the server, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib_of(self.child.id())
    }
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Peak resident set size of process `pid`, in KiB.
pub fn peak_rss_kib_of(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Resident set size of process `pid` now, in KiB.
pub fn rss_kib_of(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Whether a process benchmark called `name` runs now: only under
/// `cargo bench` (which passes `--bench`; `cargo test --all-targets` runs
/// bench targets without it), not filtered out, and with every binary in
/// `needs` built (`make bench` builds them); otherwise it says why and
/// returns false.
pub fn should_run(name: &str, needs: &[PathBuf]) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !name.contains(a.as_str()))
    {
        return false;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "{name}: a benchmark; run it with `cargo bench --bench {name}` or `make bench` (skipped)"
        );
        return false;
    }
    if let Some(missing) = needs.iter().find(|bin| !bin.exists()) {
        println!(
            "{name}: {} is not built: run `make bench` (skipped)",
            missing.display()
        );
        return false;
    }
    true
}

/// The target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The release binary `make bench` builds.
pub fn binary() -> PathBuf {
    target_dir().join("release").join("mirror-guard")
}

/// The same binary built with `bench-hooks`, which can skip the guard
/// (`make bench` builds it; the production binary has no such switch).
pub fn unguarded_binary() -> PathBuf {
    target_dir().join("release").join("mirror-guard-unguarded")
}

/// The binary of the last commit before the reshape, if `make
/// bench-baseline` built it.
pub fn baseline_binary() -> Option<PathBuf> {
    let bin = target_dir().join("mirror-guard-before-reshape");
    bin.exists().then_some(bin)
}

/// A framed produce request: `records` records of `record_bytes` bytes in
/// one batch, to `topic`/`partition`.
pub fn request(
    topic: &str,
    partition: u32,
    records: usize,
    record_bytes: usize,
    read_committed: bool,
    correlation_id: i32,
) -> Bytes {
    let value = vec![b'r'; record_bytes];
    let spec = ProduceSpec {
        timeout_ms: 1500,
        read_committed,
        topics: vec![(topic.into(), vec![(partition, vec![vec![value; records]])])],
        ..Default::default()
    };
    Bytes::from(framed(&spec.frame(25, correlation_id)))
}

/// Reads one response frame; returns the error code of its first entry.
pub async fn response(stream: &mut BufReader<TcpStream>) -> i16 {
    response_of(stream).await
}

/// [`response`] from any reader.
pub async fn response_of<R: tokio::io::AsyncRead + Unpin>(stream: &mut BufReader<R>) -> i16 {
    let size = stream.read_i32().await.expect("response size") as usize;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await.expect("response body");
    mg_testkit::first_entry(&body).1
}

/// The `q`-quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
