//! A graceful stop of the real `mirror-guard spu` process: SIGTERM in the
//! middle of a stream of pipelined produce requests. The process answers
//! what it took in, exits 0, and after a restart (the log reopened and
//! recovered) every acknowledged record is there.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mg_storage::{LogConfig, PartitionLog};
use rustix::process::{Pid, Signal, kill_process};

use common::BIN;
const REQUESTS: i32 = 20_000;

/// Reads one response frame; `None` at the end of the stream.
fn read_answer(socket: &mut TcpStream) -> Option<(i32, i16, i64)> {
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut body).ok()?;
    Some(mg_testkit::first_entry(&body))
}

#[test]
fn sigterm_during_a_produce_stream_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("spu");
    let port = mg_testkit::port_base();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "spu", "--listen", &listen, "--id", "5001", "--lead", "events:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Await the SPU's own word that it listens.
    let (lines, mut log) = common::await_stdout_line(&mut child, "SPU listening");

    let mut socket = TcpStream::connect(&listen).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut sender = socket.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        for correlation in 0..REQUESTS {
            let request = mg_testkit::one_record_request("events", 0, correlation);
            if sender.write_all(&request).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });

    let mut acked = Vec::new();
    let mut signalled = false;
    while let Some((correlation, code, offset)) = read_answer(&mut socket) {
        assert_eq!(code, 0, "request {correlation} refused");
        assert_eq!(
            i64::from(correlation),
            offset,
            "one record per request, in order"
        );
        acked.push(offset);
        if acked.len() == 500 && !signalled {
            let pid = Pid::from_raw(child.id() as i32).unwrap();
            kill_process(pid, Signal::TERM).unwrap();
            signalled = true;
        }
    }
    assert!(signalled, "the stream ended before the signal");
    let (status_tx, status) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let status = status
        .recv_timeout(Duration::from_secs(20))
        .expect("the SPU exits after SIGTERM")
        .unwrap();
    log.extend(lines.try_iter());
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("SPU stopped")),
        "a graceful stop is logged:\n{}",
        log.join("\n")
    );
    let sent = writer.join().unwrap();
    assert!(
        (acked.len() as i32) < sent || sent < REQUESTS,
        "the stop came in the middle of the stream"
    );

    // The restart: the log reopened and recovered as the SPU does.
    let (reopened, recovery) =
        PartitionLog::open(data.join("events-0"), LogConfig::default()).unwrap();
    let last = *acked.last().unwrap();
    assert_eq!(acked.len() as i64, last + 1);
    assert!(
        reopened.leo() > last,
        "acknowledged up to offset {last}, but the log ends at {} ({recovery:?})",
        reopened.leo()
    );
}
