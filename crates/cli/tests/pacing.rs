//! `mirror-guard spu --flush-target-us`, as a real process over real
//! sockets and files: with a target no commit can meet (1 µs), every small
//! commit under `--fsync always` counts as late on `/metrics`, big syncs are
//! paced (a pause shows), and what the SPU acknowledged, big and small, is
//! in the logs after it stops. Without the flag nothing is paced.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mg_storage::{LogConfig, PartitionLog};
use mg_testkit::{ProduceSpec, first_entry, framed, one_record_request};
use rustix::process::{Pid, Signal, kill_process};

use common::BIN;
/// Small commits beside the big requests.
const SMALL: i64 = 150;
/// Small commits after them: one window of the pacing (100), so that the
/// pause the scrape sees was set by small commits alone, whatever the
/// big syncs did to it before.
const SMALL_AFTER: i64 = 100;
/// Big requests, each 600 records of 1000 bytes: several chunks to sync.
const BIG: i64 = 4;
const BIG_RECORDS: usize = 600;

/// An SPU process leading `small:0` and `big:0` with `--fsync always`.
struct SpuProcess {
    child: Child,
    addr: String,
    metrics: String,
    lines: mpsc::Receiver<String>,
}

impl SpuProcess {
    fn start(data: &std::path::Path, extra: &[&str]) -> Self {
        let port = mg_testkit::port_base();
        let addr = format!("127.0.0.1:{port}");
        let metrics_port = (port + 1).to_string();
        let mut child = Command::new(BIN)
            .args([
                "spu", "--listen", &addr, "--id", "5001", "--fsync", "always",
            ])
            .args(["--metrics-port", &metrics_port])
            .args(["--lead", "small:0", "--lead", "big:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Await the SPU's own word that it listens.
        let (lines, _) = common::await_stdout_line(&mut child, "SPU listening");
        SpuProcess {
            child,
            addr,
            metrics: format!("127.0.0.1:{metrics_port}"),
            lines,
        }
    }

    /// The value of the unlabelled metric `name` on `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let answer = common::scrape(&self.metrics);
        answer
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{answer}"))
    }

    /// SIGTERM, and the exit status awaited.
    fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
        let (status_tx, status) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = status_tx.send(self.child.wait());
        });
        let status = status
            .recv_timeout(Duration::from_secs(20))
            .expect("the SPU exits after SIGTERM")
            .unwrap();
        let log: Vec<String> = self.lines.try_iter().collect();
        assert!(status.success(), "exit {status:?}:\n{}", log.join("\n"));
    }
}

/// Sends `request` and returns the answer's (code, base offset).
fn produce(socket: &mut TcpStream, request: &[u8]) -> (i16, i64) {
    socket.write_all(request).unwrap();
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut body).unwrap();
    let (_, code, offset) = first_entry(&body);
    (code, offset)
}

/// A big request: one batch of BIG_RECORDS records of 1000 bytes.
fn big_request(correlation: i32) -> Vec<u8> {
    let spec = ProduceSpec {
        timeout_ms: 1500,
        topics: vec![(
            "big".into(),
            vec![(0, vec![vec![vec![b'b'; 1000]; BIG_RECORDS]])],
        )],
        ..Default::default()
    };
    framed(&spec.frame(25, correlation))
}

/// Produces SMALL single records to small:0 on one connection while BIG
/// big requests go to big:0 on another, then SMALL_AFTER more single
/// records; every answer is checked.
fn produce_both(addr: &str) {
    let big_addr = addr.to_string();
    let big = std::thread::spawn(move || {
        let mut socket = TcpStream::connect(&big_addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        for n in 0..BIG {
            let (code, offset) = produce(&mut socket, &big_request(n as i32));
            assert_eq!((code, offset), (0, n * BIG_RECORDS as i64));
        }
    });
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for n in 0..SMALL {
        let (code, offset) = produce(&mut socket, &one_record_request("small", 0, n as i32));
        assert_eq!((code, offset), (0, n));
    }
    big.join().unwrap();
    for n in SMALL..SMALL + SMALL_AFTER {
        let (code, offset) = produce(&mut socket, &one_record_request("small", 0, n as i32));
        assert_eq!((code, offset), (0, n));
    }
}

/// The log end of `topic`-0 under `data`, reopened as the SPU does.
fn leo(data: &std::path::Path, topic: &str) -> i64 {
    PartitionLog::open(data.join(format!("{topic}-0")), LogConfig::default())
        .unwrap()
        .0
        .leo()
}

#[test]
fn an_unmeetable_flush_target_paces_big_syncs_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("spu");
    let spu = SpuProcess::start(&data, &["--flush-target-us", "1"]);
    produce_both(&spu.addr);
    assert!(
        spu.metric("mirror_guard_small_commits_late_total") >= (SMALL + SMALL_AFTER) as f64,
        "every small commit took longer than 1 us"
    );
    assert!(
        spu.metric("mirror_guard_sync_pause_seconds") > 0.0,
        "a window of late small commits pauses big syncs"
    );
    spu.stop();
    assert_eq!(leo(&data, "small"), SMALL + SMALL_AFTER);
    assert_eq!(leo(&data, "big"), BIG * BIG_RECORDS as i64);
}

#[test]
fn without_a_flush_target_nothing_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("spu");
    let spu = SpuProcess::start(&data, &[]);
    produce_both(&spu.addr);
    assert_eq!(spu.metric("mirror_guard_small_commits_late_total"), 0.0);
    assert_eq!(spu.metric("mirror_guard_sync_pause_seconds"), 0.0);
    spu.stop();
    assert_eq!(leo(&data, "small"), SMALL + SMALL_AFTER);
}

#[test]
fn a_zero_flush_target_is_refused() {
    let out = Command::new(BIN)
        .args(["spu", "--flush-target-us", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flush-target-us"), "{err}");
}
