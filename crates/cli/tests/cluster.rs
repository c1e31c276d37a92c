//! The `mirror-guard` binary as an operator runs it: a local cluster of real
//! processes, the fluvio-style commands, and the SC killed with SIGKILL and
//! started again while the SPUs keep serving.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, LocalCluster, eventually, kill9, produce_to_spu, run, text};

#[test]
fn an_operator_session_with_a_local_cluster() {
    let cluster = LocalCluster::start(1);
    let out = cluster.cli(&["remote", "register", "edge1"], None);
    assert_eq!(
        text(&out.stdout),
        "remote cluster \"edge1\" was registered\n",
        "{}",
        text(&out.stderr)
    );
    let remotes = cluster.dir.path().join("remotes.json");
    std::fs::write(&remotes, "[\"edge1\"]").unwrap();
    let out = cluster.cli(
        &[
            "topic",
            "create",
            "edge-metrics",
            "--mirror-apply",
            remotes.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.cli(&["topic", "create", "orders"], None);
    assert_eq!(text(&out.stdout), "topic \"orders\" created\n");

    let list = text(&cluster.cli(&["topic", "list"], None).stdout);
    assert!(
        list.lines()
            .any(|l| l.contains("edge-metrics") && l.contains("from-remote")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("orders") && l.contains("computed")),
        "{list}"
    );
    let partitions = text(&cluster.cli(&["partition", "list"], None).stdout);
    assert!(partitions.contains("edge1(from-remote)"), "{partitions}");

    // A home produce to the to-home mirror topic: refused, non-zero exit.
    let out = cluster.cli(&["produce", "edge-metrics"], Some("from home\n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "Producer error: Producer received an error code: produce from home is not allowed"
        ),
        "{}",
        text(&out.stderr)
    );
    // A plain topic takes the records, and they come back.
    let out = cluster.cli(&["produce", "orders"], Some("one\ntwo\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.cli(&["consume", "orders", "-B", "-d"], None);
    assert_eq!(text(&out.stdout), "one\ntwo\n", "{}", text(&out.stderr));

    // SIGKILL the SC. The SPU keeps serving its last roles, failing closed.
    let pids = cluster.pids();
    let (sc_pid, spu_addr) = (pids[0], cluster.spu_addr());
    kill9(sc_pid);
    assert_eq!(produce_to_spu(&spu_addr, "orders"), 0);
    assert_eq!(produce_to_spu(&spu_addr, "edge-metrics"), 11003);
    assert_eq!(produce_to_spu(&spu_addr, "nowhere"), 6);

    // A new SC process on the same data and ports: the running SPU
    // reconnects, gets a full sync, and follows the SC's changes again.
    let file = cluster.file();
    let mut sc = Command::new(BIN)
        .args(["sc", "--data-dir"])
        .arg(cluster.dir.path().join("sc"))
        .args([
            "--public",
            file["sc_public"].as_str().unwrap(),
            "--private",
            file["sc_private"].as_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the SC to answer again", || {
        cluster.cli(&["topic", "list"], None).status.success()
    });
    let out = cluster.cli(&["topic", "delete", "orders"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually("the SPU to drop the deleted partition", || {
        produce_to_spu(&spu_addr, "orders") == 6
    });
    assert_eq!(produce_to_spu(&spu_addr, "edge-metrics"), 11003);
    let _ = sc.kill();
    let _ = sc.wait();
}

#[test]
fn shutdown_and_resume_keep_the_data() {
    let cluster = LocalCluster::start(1);
    assert!(
        cluster
            .cli(&["topic", "create", "kept"], None)
            .status
            .success()
    );
    assert!(
        cluster
            .cli(&["produce", "kept"], Some("still here\n"))
            .status
            .success()
    );
    let out = run(
        &["cluster", "shutdown", "--data-dir"],
        Some(cluster.dir.path()),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &["cluster", "resume", "--data-dir"],
        Some(cluster.dir.path()),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.cli(&["consume", "kept", "-B", "-d"], None);
    assert_eq!(text(&out.stdout), "still here\n", "{}", text(&out.stderr));
    // Starting over an existing cluster is refused.
    let out = run(
        &["cluster", "start", "--data-dir"],
        Some(cluster.dir.path()),
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
}

/// `cluster start --store etcd://…`: the SC keeps its metadata on a real
/// etcd (started here), none under its data directory; shutdown and resume
/// find it there.
#[test]
fn a_cluster_on_etcd_keeps_its_metadata_there() {
    let etcd = mg_testkit::etcd::Etcd::start();
    let url = etcd.url();
    let cluster = LocalCluster::start_with(
        1,
        &["--store", &url, "--etcd-prefix", "/mirror-guard/cli-test"],
    );
    let out = cluster.cli(&["topic", "create", "kept"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.cli(&["produce", "kept"], Some("on etcd\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sc_log = std::fs::read_to_string(cluster.dir.path().join("logs/sc.log")).unwrap();
    assert!(sc_log.contains("store=etcd://127.0.0.1:"), "{sc_log}");
    assert!(
        !cluster.dir.path().join("sc/metadata/topic").exists(),
        "no topic file: the metadata is on etcd"
    );
    for command in ["shutdown", "resume"] {
        let out = run(
            &["cluster", command, "--data-dir"],
            Some(cluster.dir.path()),
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = cluster.cli(&["consume", "kept", "-B", "-d"], None);
    assert_eq!(text(&out.stdout), "on etcd\n", "{}", text(&out.stderr));
    let listed = text(&cluster.cli(&["topic", "list"], None).stdout);
    assert!(listed.contains("kept"), "{listed}");
}

/// `cluster migrate-store`: a cluster on files, with topics and records,
/// moves to a real etcd. The check writes nothing; a prefix holding
/// anything else is refused; what a cut-short migration left is written
/// again; the resumed cluster runs on etcd with every topic, its records
/// (on the SPUs, untouched) and its mirror roles; a second migration is
/// refused.
#[test]
fn a_file_cluster_migrates_to_etcd() {
    let etcd = mg_testkit::etcd::Etcd::start();
    let url = etcd.url();
    let cluster = LocalCluster::start(1);
    let dir = cluster.dir.path();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.cli(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&["topic", "create", "orders"], None);
    ok(&["topic", "create", "wide", "--partitions", "3"], None);
    ok(&["produce", "orders"], Some("before the move\n"));
    ok(&["remote", "register", "edge1"], None);
    common::mirror_topic(&cluster, "m", &["edge1"], false);
    let migrate = |prefix: &str, check: bool| {
        let mut args = vec![
            "cluster",
            "migrate-store",
            "--to",
            &url,
            "--etcd-prefix",
            prefix,
        ];
        if check {
            args.push("--check");
        }
        args.push("--data-dir");
        run(&args, Some(dir), None)
    };
    // Running: refused.
    let out = migrate("/mirror-guard/moved", true);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is running"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["cluster", "shutdown", "--data-dir"], Some(dir), None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The check: every object counted, nothing written.
    let out = migrate("/mirror-guard/moved", true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("1 SPU, 3 topics, 5 partitions, 1 mirror object")
            && said.contains("nothing was written"),
        "{said}"
    );
    assert!(etcd.snapshot("/mirror-guard/").is_empty());

    // A prefix that holds anything else is refused.
    etcd.put("/mirror-guard/taken/CURRENT", "gen-000007");
    let out = migrate("/mirror-guard/taken", false);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds 1 key(s)"),
        "{}",
        text(&out.stderr)
    );
    // What a cut-short migration left (its own generation, no CURRENT) is
    // dropped and written again.
    etcd.put(
        "/mirror-guard/moved/gen-000001/topic/half-written",
        "left by a migration killed mid-way",
    );
    let out = migrate("/mirror-guard/moved", false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("migrated 10 objects"),
        "{}",
        text(&out.stdout)
    );
    let keys = etcd.snapshot("/mirror-guard/moved/");
    assert_eq!(keys["/mirror-guard/moved/CURRENT"], b"gen-000001");
    assert!(!keys.contains_key("/mirror-guard/moved/gen-000001/topic/half-written"));
    assert_eq!(keys.len(), 11, "ten objects and CURRENT: {:?}", keys.keys());
    assert_eq!(cluster.file()["store"], url.as_str());

    // Resumed on etcd: everything is there, and it is where changes go.
    let out = run(&["cluster", "resume", "--data-dir"], Some(dir), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sc_log = std::fs::read_to_string(dir.join("logs/sc.log")).unwrap();
    assert!(sc_log.contains("store=etcd://127.0.0.1:"), "{sc_log}");
    let listed = ok(&["topic", "list"], None);
    assert!(
        listed.contains("orders") && listed.contains(" m "),
        "{listed}"
    );
    assert_eq!(
        ok(&["consume", "orders", "-B", "-d"], None),
        "before the move\n"
    );
    assert_eq!(
        produce_to_spu(&cluster.spu_addr(), "m"),
        11003,
        "the mirror role moved too"
    );
    ok(&["topic", "create", "after"], None);
    assert!(
        etcd.snapshot("/mirror-guard/moved/gen-000001/topic/")
            .contains_key("/mirror-guard/moved/gen-000001/topic/after")
    );
    let out = run(&["cluster", "shutdown", "--data-dir"], Some(dir), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = migrate("/mirror-guard/again", false);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already"),
        "{}",
        text(&out.stderr)
    );
}

/// Small commits the cluster's first SPU counted late, on its `/metrics`.
fn late_small_commits(cluster: &LocalCluster) -> u64 {
    common::spu_series(cluster, "mirror_guard_small_commits_late_total")
        .expect("the counter is exposed")
}

/// `cluster start --fsync always --flush-target-us 1`: the SPUs run with
/// those flags (every produce is a commit, each later than 1 µs), and so
/// they do again after `cluster resume`.
#[test]
fn spu_flags_given_at_start_hold_across_resume() {
    let cluster = LocalCluster::start_with(1, &["--fsync", "always", "--flush-target-us", "1"]);
    assert_eq!(
        cluster.file()["spu_args"],
        serde_json::json!(["--fsync", "always", "--flush-target-us", "1"])
    );
    assert!(
        cluster
            .cli(&["topic", "create", "paced"], None)
            .status
            .success()
    );
    let produce = |line: &str| {
        let out = cluster.cli(&["produce", "paced"], Some(line));
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    produce("one\n");
    assert!(late_small_commits(&cluster) >= 1);
    for step in ["shutdown", "resume"] {
        let out = run(
            &["cluster", step, "--data-dir"],
            Some(cluster.dir.path()),
            None,
        );
        assert!(out.status.success(), "{step}: {}", text(&out.stderr));
    }
    // A new SPU process, counting from zero, with the same flags.
    produce("two\n");
    assert!(late_small_commits(&cluster) >= 1);
    let out = cluster.cli(&["consume", "paced", "-B", "-d"], None);
    assert_eq!(text(&out.stdout), "one\ntwo\n", "{}", text(&out.stderr));
}
