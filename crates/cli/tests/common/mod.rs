//! Shared by the binary's tests: local clusters of real processes, driven
//! through the `mirror-guard` command as an operator drives them.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mirror-guard");

pub struct LocalCluster {
    pub dir: tempfile::TempDir,
    pub sc: String,
}

impl LocalCluster {
    pub fn start(spus: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = mg_testkit::port_base();
        let out = run(
            &[
                "cluster",
                "start",
                "--spus",
                &spus.to_string(),
                "--base-port",
                &base.to_string(),
                "--data-dir",
            ],
            Some(dir.path()),
            None,
        );
        assert!(out.status.success(), "cluster start: {}", text(&out.stderr));
        LocalCluster {
            dir,
            sc: format!("127.0.0.1:{base}"),
        }
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("MIRROR_GUARD_SC", &self.sc)
            .env("MIRROR_GUARD_TLS_DIR", self.dir.path().join("tls"));
        finish(command, stdin)
    }

    pub fn file(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap(),
        )
        .unwrap()
    }

    pub fn pids(&self) -> Vec<i32> {
        self.file()["pids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_i64().unwrap() as i32)
            .collect()
    }

    pub fn spu_addr(&self) -> String {
        self.file()["spus"][0]["public"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = run(
            &["cluster", "shutdown", "--data-dir"],
            Some(self.dir.path()),
            None,
        );
    }
}

pub fn finish(mut command: Command, stdin: Option<&str>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    // A command that fails early stops reading: its exit status says why.
    let _ = pipe.write_all(input.as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub fn run(args: &[&str], dir: Option<&Path>, stdin: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    if let Some(dir) = dir {
        command.arg(dir);
    }
    finish(command, stdin)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Produces one record straight to an SPU, as a client holding its address
/// would; returns the entry's error code.
pub fn produce_to_spu(addr: &str, topic: &str) -> i16 {
    mg_testkit::produce_code(addr, topic, 0)
}

/// Retries `check` until it holds: for state that lives in another process,
/// which this test can only observe by asking.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills process `pid` with SIGKILL and waits until it is gone.
pub fn kill9(pid: i32) {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    eventually("the process to die", || {
        !Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    });
}
