//! `cluster upgrade` interrupted at every write step in turn, and killed
//! with SIGKILL at pseudo-random moments, with the metadata in files and on
//! a real etcd: after each interruption the store is consistent (`upgrade
//! --check` passes, and the SC either starts on the new generation or
//! refuses with a clear reason), and re-running the upgrade completes.
//! `cluster resume` refuses what it must. `cluster migrate-store` moves a
//! file store to etcd, checking first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mg_sc::Cluster;
use mg_sc::etcd::EtcdConfig;
use mg_sc::persist::StoreConfig;
use mg_sc::store::LoadError;
use mg_testkit::etcd::Etcd;

const BIN: &str = env!("CARGO_BIN_EXE_mirror-guard");

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metadata-v1")
}

fn cli(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where a test's metadata lives: files in the data directory, or a prefix
/// on a real etcd that the data directory's `cluster.json` names.
enum Store<'a> {
    Files,
    Etcd(&'a Etcd, String),
}

impl Store<'_> {
    /// The schema-1 fixture, in this store; `dir` is the cluster's data dir.
    fn load_v1(&self, dir: &Path) {
        match self {
            Store::Files => mg_testkit::copy_dir(&fixture(), dir),
            Store::Etcd(etcd, prefix) => {
                etcd.load_files(prefix, &fixture().join("sc"));
                let file = serde_json::json!({
                    "sc_public": "127.0.0.1:1", "sc_private": "127.0.0.1:2",
                    "spus": [{"id": 5001, "public": "127.0.0.1:3"}], "pids": [],
                    "store": etcd.url(), "etcd_prefix": prefix,
                });
                fs::create_dir_all(dir).unwrap();
                fs::write(dir.join("cluster.json"), file.to_string()).unwrap();
            }
        }
    }

    fn open(&self, dir: &Path) -> Result<Cluster, LoadError> {
        let config = match self {
            Store::Files => StoreConfig::Files,
            Store::Etcd(etcd, prefix) => {
                StoreConfig::Etcd(EtcdConfig::parse(&etcd.url(), prefix).unwrap())
            }
        };
        Cluster::open_with(&dir.join("sc"), &config)
    }

    /// The stored text of topic `orders` in the current generation.
    fn orders(&self, dir: &Path) -> String {
        match self {
            Store::Files => {
                let current = fs::read_to_string(dir.join("sc/CURRENT")).unwrap();
                fs::read_to_string(dir.join("sc").join(current).join("topic/orders.json")).unwrap()
            }
            Store::Etcd(etcd, prefix) => {
                let keys = etcd.snapshot(prefix);
                let current = text(&keys[&format!("{prefix}/CURRENT")]);
                text(&keys[&format!("{prefix}/{current}/topic/orders")])
            }
        }
    }
}

/// The store is consistent: the check reads every object, and the SC either
/// starts (on the new generation) or refuses for a reason an operator can act on.
fn assert_consistent(store: &Store, data_dir: &Path, context: &str) {
    let out = cli(&["cluster", "upgrade", "--check"], data_dir);
    assert!(
        out.status.success(),
        "{context}: check failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    match store.open(data_dir) {
        Ok(cluster) => assert_eq!(cluster.topics().len(), 2, "{context}"),
        Err(LoadError::NeedsMigration { .. } | LoadError::IncompleteUpgrade(_)) => {}
        Err(other) => panic!("{context}: inconsistent store: {other}"),
    }
}

fn assert_upgraded(store: &Store, data_dir: &Path, context: &str) {
    let cluster = store
        .open(data_dir)
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(cluster.topics().len(), 2, "{context}");
    assert_eq!(cluster.partitions().len(), 2, "{context}");
    assert!(
        store.orders(data_dir).contains("billing team"),
        "{context}: the unknown field survived"
    );
}

fn aborted_at_every_step<'a>(store_for: impl Fn(usize) -> (Store<'a>, String)) {
    let mut step = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let (store, name) = store_for(step);
        store.load_v1(dir.path());
        let out = cli(
            &["cluster", "upgrade", "--crash-at-step", &step.to_string()],
            dir.path(),
        );
        if out.status.success() {
            // Past the last write step: the upgrade simply completed.
            assert!(step > 5, "{name}: the upgrade has several write steps");
            assert_upgraded(&store, dir.path(), &format!("{name}: uninterrupted"));
            break;
        }
        assert!(
            text(&out.stderr).contains(&format!("crash injected at upgrade step {step}")),
            "{}",
            text(&out.stderr)
        );
        let context = format!("{name}: aborted at step {step}");
        assert_consistent(&store, dir.path(), &context);
        let out = cli(&["cluster", "upgrade"], dir.path());
        assert!(
            out.status.success(),
            "{context}: re-run failed: {}",
            text(&out.stderr)
        );
        assert_upgraded(&store, dir.path(), &context);
        step += 1;
    }
}

#[test]
fn an_upgrade_aborted_at_every_step_recovers() {
    aborted_at_every_step(|_| (Store::Files, "files".into()));
}

#[test]
fn an_upgrade_on_etcd_aborted_at_every_step_recovers() {
    let etcd = Etcd::start();
    aborted_at_every_step(|step| {
        let prefix = format!("/mirror-guard/step{step}");
        (Store::Etcd(&etcd, prefix), "etcd".into())
    });
}

/// A larger schema-1 store, so that kills land in the middle of the work.
fn big_v1_store(store: &Store, dir: &Path, topics: usize) {
    let staged = tempfile::tempdir().unwrap();
    mg_testkit::copy_dir(&fixture(), staged.path());
    let meta = staged.path().join("sc/metadata");
    for i in 0..topics {
        let name = format!("bulk-{i:05}");
        let topic = format!(
            r#"{{"schema": 1, "kind": "topic", "name": "{name}", "spec": {{"name": "{name}", "replicas": {{"computed": {{"partitions": 1}}}}}}}}"#
        );
        fs::write(meta.join(format!("topic/{name}.json")), topic).unwrap();
        let partition = format!(
            r#"{{"schema": 1, "kind": "partition", "name": "{name}-0", "spec": {{"topic": "{name}", "partition": 0, "leader": 5001}}}}"#
        );
        fs::write(meta.join(format!("partition/{name}-0.json")), partition).unwrap();
    }
    match store {
        Store::Files => mg_testkit::copy_dir(staged.path(), dir),
        Store::Etcd(etcd, prefix) => {
            store.load_v1(dir);
            etcd.load_files(prefix, &staged.path().join("sc"));
        }
    }
}

fn killed_at_random_moments<'a>(store_for: impl Fn(usize) -> Store<'a>, window: Duration) {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let store = store_for(round);
        big_v1_store(&store, dir.path(), 300);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % window.as_micros() as u64);
        let mut child = Command::new(BIN)
            .args(["cluster", "upgrade", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay); // the kill must land at an arbitrary moment
        let finished = child.try_wait().unwrap();
        let _ = child.kill(); // SIGKILL
        let said = child.wait_with_output().unwrap().stderr;
        let context = format!("round {round}, killed after {delay:?} (seed {seed})");
        let out = cli(&["cluster", "upgrade", "--check"], dir.path());
        assert!(out.status.success(), "{context}: {}", text(&out.stdout));
        if let Some(status) = finished {
            // It completed before the kill: nothing to redo.
            assert!(
                status.success(),
                "{context}: the upgrade failed: {}",
                text(&said)
            );
        } else {
            let out = cli(&["cluster", "upgrade"], dir.path());
            // Killed past its commit point (the switch), before it exited:
            // the upgrade is done, and says so.
            let done = text(&out.stderr).contains("awaits `cluster upgrade --finalize`");
            assert!(
                out.status.success() || done,
                "{context}: re-run failed: {}",
                text(&out.stderr)
            );
        }
        let cluster = store
            .open(dir.path())
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(cluster.topics().len(), 302, "{context}");
    }
}

#[test]
fn an_upgrade_killed_at_random_moments_recovers() {
    killed_at_random_moments(|_| Store::Files, Duration::from_millis(40));
}

#[test]
fn an_upgrade_on_etcd_killed_at_random_moments_recovers() {
    let etcd = Etcd::start();
    killed_at_random_moments(
        |round| Store::Etcd(&etcd, format!("/mirror-guard/kill{round}")),
        Duration::from_millis(300),
    );
}

fn with_cluster_file(dir: &Path) {
    let file = r#"{"sc_public": "127.0.0.1:1", "sc_private": "127.0.0.1:2", "spus": [{"id": 5001, "public": "127.0.0.1:3"}], "pids": []}"#;
    fs::write(dir.join("cluster.json"), file).unwrap();
}

#[test]
fn resume_refuses_what_it_must() {
    // Unmigrated metadata.
    let dir = tempfile::tempdir().unwrap();
    mg_testkit::copy_dir(&fixture(), dir.path());
    with_cluster_file(dir.path());
    let out = cli(&["cluster", "resume"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("run `cluster upgrade` first"),
        "{}",
        text(&out.stderr)
    );

    // An interrupted upgrade: aborted at the last step, after it was recorded
    // but before CURRENT switched (1 directory + 6 objects + rename + record).
    let out = cli(&["cluster", "upgrade", "--crash-at-step", "10"], dir.path());
    assert!(!out.status.success());
    let out = cli(&["cluster", "resume"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("upgrade was interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert!(cli(&["cluster", "upgrade"], dir.path()).status.success());

    // Metadata from a newer schema: the downgrade guard.
    let current = fs::read_to_string(dir.path().join("sc/CURRENT")).unwrap();
    let future = dir
        .path()
        .join("sc")
        .join(&current)
        .join("topic/future.json");
    fs::write(
        &future,
        r#"{"schema": 7, "kind": "topic", "name": "future", "spec": {}}"#,
    )
    .unwrap();
    let out = cli(&["cluster", "resume"], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("newer schema") && err.contains("future.json"),
        "{err}"
    );
    let out = cli(&["cluster", "upgrade", "--check"], dir.path());
    assert!(
        !out.status.success(),
        "the check exits non-zero when something cannot be upgraded"
    );
    fs::remove_file(&future).unwrap();

    // One unreadable object: named, and the cluster does not start empty.
    let broken = dir
        .path()
        .join("sc")
        .join(&current)
        .join("topic/orders.json");
    fs::write(&broken, "not json at all").unwrap();
    let out = cli(&["cluster", "resume"], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("orders.json") && err.contains("unreadable"),
        "{err}"
    );
}

/// The whole path an operator takes: a schema-1 cluster is upgraded, resumed
/// on the new generation by real processes, used, shut down and finalized.
#[test]
fn upgrade_resume_finalize_with_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    mg_testkit::copy_dir(&fixture(), dir.path());
    let base = mg_testkit::port_base();
    let file = format!(
        r#"{{"sc_public": "127.0.0.1:{}", "sc_private": "127.0.0.1:{}", "spus": [{{"id": 5001, "public": "127.0.0.1:{}"}}], "pids": []}}"#,
        base,
        base + 1,
        base + 2
    );
    fs::write(dir.path().join("cluster.json"), file).unwrap();
    assert!(
        cli(&["cluster", "upgrade", "--check"], dir.path())
            .status
            .success()
    );
    assert!(cli(&["cluster", "upgrade"], dir.path()).status.success());
    let out = cli(&["cluster", "resume"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));

    let sc = format!("127.0.0.1:{base}");
    let client = |args: &[&str], input: &str| {
        use std::io::Write as _;
        let mut child = Command::new(BIN)
            .args(args)
            .env("MIRROR_GUARD_SC", &sc)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let topics = text(&client(&["topic", "list"], "").stdout);
    assert!(
        topics.contains("orders") && topics.contains("edge-metrics"),
        "{topics}"
    );
    assert!(
        client(&["produce", "orders"], "after the upgrade\n")
            .status
            .success()
    );
    let out = client(&["produce", "edge-metrics"], "from home\n");
    assert!(
        !out.status.success() && text(&out.stderr).contains("11003"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&client(&["consume", "orders", "-B", "-d"], "").stdout),
        "after the upgrade\n"
    );

    assert!(cli(&["cluster", "shutdown"], dir.path()).status.success());
    let out = cli(&["cluster", "upgrade", "--finalize"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !dir.path().join("sc/metadata").exists(),
        "the backup is pruned only now"
    );
    assert!(!cli(&["cluster", "rollback"], dir.path()).status.success());
}
