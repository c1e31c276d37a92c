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
