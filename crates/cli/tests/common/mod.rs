//! Shared by the binary's tests: local clusters of real processes, driven
//! through the `mirror-guard` command as an operator drives them.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mirror-guard");

pub struct LocalCluster {
    pub dir: tempfile::TempDir,
    pub sc: String,
}

impl LocalCluster {
    pub fn start(spus: u16) -> Self {
        Self::start_with(spus, &[])
    }

    /// [`start`](Self::start) with more `cluster start` flags.
    pub fn start_with(spus: u16, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = mg_testkit::port_base();
        let (spus, base_port) = (spus.to_string(), base.to_string());
        let mut args = vec![
            "cluster",
            "start",
            "--spus",
            &spus,
            "--base-port",
            &base_port,
        ];
        args.extend_from_slice(flags);
        args.push("--data-dir");
        let out = run(&args, Some(dir.path()), None);
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

/// Every record byte a cluster stores for a partition, in log order,
/// whichever of its SPUs holds it.
pub fn stored(cluster: &LocalCluster, topic: &str, partition: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for spu in std::fs::read_dir(cluster.dir.path()).unwrap() {
        let dir = spu.unwrap().path().join(format!("{topic}-{partition}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut logs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            bytes.extend(std::fs::read(log).unwrap());
        }
    }
    bytes
}

/// (LEO, records) as `partition list` reports them for `topic`.
pub fn leo(cluster: &LocalCluster, topic: &str, partition: u32) -> Option<i64> {
    let out = cluster.cli(&["partition", "list"], None);
    let list = text(&out.stdout);
    list.lines().find_map(|line| {
        let cells: Vec<&str> = line.split_whitespace().collect();
        (cells.first() == Some(&topic) && cells.get(1) == Some(&partition.to_string().as_str()))
            .then(|| cells.last()?.parse().ok())
            .flatten()
    })
}

pub fn consume(cluster: &LocalCluster, topic: &str, partition: u32) -> String {
    let p = partition.to_string();
    text(
        &cluster
            .cli(&["consume", topic, "-B", "-d", "-p", &p], None)
            .stdout,
    )
}

pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Pairs `edge` with `home` as remote `id`: register, export, connect.
pub fn pair(home: &LocalCluster, edge: &LocalCluster, id: &str) -> PathBuf {
    ok(home.cli(&["remote", "register", id], None));
    let file = home.dir.path().join(format!("{id}.json"));
    let out = ok(home.cli(
        &["remote", "export", id, "--file", file.to_str().unwrap()],
        None,
    ));
    assert!(out.contains("exported"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export file is private");
    let out = ok(edge.cli(&["home", "connect", "--file", file.to_str().unwrap()], None));
    assert_eq!(out, "connecting with \"home\" cluster\n");
    file
}

pub fn mirror_topic(home: &LocalCluster, name: &str, remotes: &[&str], home_to_remote: bool) {
    let list = home.dir.path().join(format!("{name}-remotes.json"));
    std::fs::write(&list, serde_json::to_string(remotes).unwrap()).unwrap();
    let mut args = vec![
        "topic",
        "create",
        name,
        "--mirror-apply",
        list.to_str().unwrap(),
    ];
    if home_to_remote {
        args.push("--home-to-remote");
    }
    ok(home.cli(&args, None));
}

pub fn has_topic(cluster: &LocalCluster, name: &str, kind: &str) -> bool {
    let list = text(&cluster.cli(&["topic", "list"], None).stdout);
    list.lines().any(|l| l.contains(name) && l.contains(kind))
}

pub fn log_lines(cluster: &LocalCluster, needle: &str) -> usize {
    let logs = cluster.dir.path().join("logs");
    std::fs::read_dir(logs)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .map(|log| log.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

/// Processes this test started again by hand, by (cluster, index); killed
/// when the test ends.
#[derive(Default)]
pub struct Restarted(Vec<((String, usize), Child)>);

impl Restarted {
    /// The live pid of a cluster's process `index` (0: the SC, then the
    /// SPUs): its last restart, or the one `cluster start` recorded.
    pub fn pid(&self, cluster: &LocalCluster, index: usize) -> i32 {
        let key = (cluster.sc.clone(), index);
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, child)| child.id() as i32)
            .unwrap_or(cluster.pids()[index])
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills a cluster's SC (`index` 0) or SPU (`index` 1..) with SIGKILL and
/// starts it again on the same data and ports.
pub fn kill_and_restart(cluster: &LocalCluster, index: usize, restarted: &mut Restarted) {
    kill9(restarted.pid(cluster, index));
    let file = cluster.file();
    let dir: &Path = cluster.dir.path();
    let private = file["sc_private"].as_str().unwrap();
    let mut command = Command::new(BIN);
    command.arg(if index == 0 { "sc" } else { "spu" });
    command.arg("--tls-dir").arg(dir.join("tls"));
    if index == 0 {
        command
            .arg("--data-dir")
            .arg(dir.join("sc"))
            .args(["--public", file["sc_public"].as_str().unwrap()])
            .args(["--private", private]);
    } else {
        let spu = &file["spus"][index - 1];
        let id = spu["id"].as_i64().unwrap().to_string();
        command
            .args(["--id", &id])
            .args(["--listen", spu["public"].as_str().unwrap()])
            .arg("--data-dir")
            .arg(dir.join(format!("spu-{id}")))
            .args(["--sc", private]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    restarted.0.push(((cluster.sc.clone(), index), child));
    // Back before the test goes on: a client must find it serving.
    let serves = if index == 0 {
        file["sc_public"].as_str().unwrap().to_string()
    } else {
        file["spus"][index - 1]["public"]
            .as_str()
            .unwrap()
            .to_string()
    };
    eventually("the restarted process to serve", || {
        std::net::TcpStream::connect(&serves).is_ok()
    });
}

/// `GET /metrics` from `endpoint`, the whole answer.
/// The value of `series` (its name and whole label set) on the `/metrics`
/// of `cluster`'s first SPU, if it is there.
pub fn spu_series(cluster: &LocalCluster, series: &str) -> Option<u64> {
    let endpoint = cluster.file()["spus"][0]["metrics"]
        .as_str()
        .unwrap()
        .to_string();
    scrape(&endpoint)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

pub fn scrape(endpoint: &str) -> String {
    let mut http = std::net::TcpStream::connect(endpoint).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// Sends `signal` (e.g. "STOP", "CONT") to process `pid`.
pub fn signal(pid: i32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// The lines `child` prints on its stdout (piped), as they come, and
/// those up to and including the first that contains `ready`, awaited
/// for at most 20 s: a server's own word that it listens.
pub fn await_stdout_line(
    child: &mut Child,
    ready: &str,
) -> (std::sync::mpsc::Receiver<String>, Vec<String>) {
    use std::io::BufRead;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let output = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line with {ready:?} within 20 s: {seen:?}"));
        let found = line.contains(ready);
        seen.push(line);
        if found {
            return (lines, seen);
        }
    }
}
