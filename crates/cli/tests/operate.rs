//! Operating mirrors between real clusters of real processes, through the
//! `mirror-guard` command: failover with fencing against a sender that
//! comes back with an old view, promote that waits for the sync (and
//! refuses when it cannot), pause and resume with no gap, what `remote
//! list`, `home status`, `topic list` and `partition list` show, and the
//! state surviving an SC restart.

mod common;

use common::{
    LocalCluster, Restarted, consume, eventually, has_topic, kill_and_restart, leo, mirror_topic,
    ok, pair, signal, stored, text,
};
use serde_json::Value;

/// `-O json` of `remote list` (home) or `home status` (remote).
fn mirrors_json(cluster: &LocalCluster, home: bool) -> Value {
    let args: &[&str] = if home {
        &["remote", "list", "-O", "json"]
    } else {
        &["home", "status", "-O", "json"]
    };
    serde_json::from_str(&ok(cluster.cli(args, None))).unwrap()
}

/// The one mirror partition of `topic` in a `-O json` listing.
fn partition_json(listing: &Value, topic: &str) -> Value {
    listing["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == topic)
        .cloned()
        .unwrap_or(Value::Null)
}

fn records(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{prefix}{n}\n")).collect()
}

/// A counter of the home SPU's `/metrics`, by its whole label set.
fn counter(cluster: &LocalCluster, series: &str) -> u64 {
    common::spu_series(cluster, series).unwrap_or(0)
}

#[test]
fn failover_fences_a_sender_that_comes_back_with_an_old_view() {
    let home = LocalCluster::start(1);
    let edge = LocalCluster::start(1);
    let mut restarted = Restarted::default();
    pair(&home, &edge, "edge1");
    mirror_topic(&home, "orders", &["edge1"], false);
    eventually("the edge's copy", || has_topic(&edge, "orders", "to-home"));
    ok(edge.cli(&["produce", "orders"], Some(&records("e", 0..3))));
    eventually("the edge's records at the home", || {
        leo(&home, "orders", 0) == Some(3)
    });

    // Cut the sender off with the view it has now: its SC frozen (it hears
    // of nothing), its SPU frozen in the middle of its link.
    let (edge_sc, edge_spu) = (edge.pids()[0], edge.pids()[1]);
    signal(edge_sc, "STOP");
    signal(edge_spu, "STOP");

    // Fail over at the home: the command returns once the home SPU fenced.
    let out = ok(home.cli(
        &[
            "topic",
            "failover",
            "orders",
            "--remote",
            "edge1",
            "--timeout",
            "20",
        ],
        None,
    ));
    assert!(out.contains("failed-over"), "{out}");
    assert!(out.contains("mirroring failed over"), "{out}");

    // The partition is the home's own now: a local producer is accepted.
    ok(home.cli(&["produce", "orders", "-p", "0"], Some("h0\nh1\n")));
    eventually("the local records at the home", || {
        leo(&home, "orders", 0) == Some(5)
    });

    // The old sender wakes, still sure it mirrors, and takes more records.
    let fenced = "mirror_guard_mirror_connections_refused_total{reason=\"fenced\"}";
    let before = counter(&home, fenced);
    signal(edge_spu, "CONT");
    let edge_spu_addr = edge.spu_addr();
    for _ in 0..3 {
        assert_eq!(common::produce_to_spu(&edge_spu_addr, "orders"), 0);
    }
    eventually("the old sender to be refused as fenced", || {
        counter(&home, fenced) > before
    });
    // Not one of its records was appended; the local ones stay.
    assert_eq!(leo(&home, "orders", 0), Some(5));
    assert_eq!(consume(&home, "orders", 0), "e0\ne1\ne2\nh0\nh1\n");

    // The edge's SC wakes: it hears the mirroring ended, and shows it as
    // ended, not as failing.
    signal(edge_sc, "CONT");
    eventually("the edge to show the mirror ended", || {
        partition_json(&mirrors_json(&edge, false), "orders")["state"] == "ended"
    });
    let listing = ok(edge.cli(&["topic", "list"], None));
    assert!(listing.contains("0:ended"), "{listing}");
    // Its copy is its own topic now: it may delete it.
    ok(edge.cli(&["produce", "orders"], Some("e3\n")));

    // The home shows it failed over, and keeps it so across an SC restart.
    let shown = ok(home.cli(&["partition", "list"], None));
    assert!(shown.contains("failed-over"), "{shown}");
    kill_and_restart(&home, 0, &mut restarted);
    eventually("the restarted SC to show the state", || {
        text(&home.cli(&["topic", "list"], None).stdout).contains("0:failed-over")
    });
    let row = partition_json(&mirrors_json(&home, true), "orders");
    assert_eq!(row["state"], "failed-over");
    assert_eq!(row["epoch"], 1);
    ok(home.cli(&["produce", "orders", "-p", "0"], Some("h2\n")));
    eventually("one more local record", || {
        leo(&home, "orders", 0) == Some(6)
    });
    ok(edge.cli(&["topic", "delete", "orders"], None));
}

#[test]
fn pause_resume_and_promote_lose_nothing_and_wait_for_the_sync() {
    let home = LocalCluster::start(1);
    let edge = LocalCluster::start(1);
    pair(&home, &edge, "edge1");
    mirror_topic(&home, "metrics", &["edge1"], false);
    eventually("the edge's copy", || has_topic(&edge, "metrics", "to-home"));
    ok(edge.cli(&["produce", "metrics"], Some(&records("m", 0..100))));
    eventually("the edge's records at the home", || {
        leo(&home, "metrics", 0) == Some(100)
    });

    // What an operator sees at a glance, on both sides.
    eventually("the home to show the partition in sync", || {
        let row = partition_json(&mirrors_json(&home, true), "metrics");
        row["state"] == "active" && row["lag"] == 0 && row["connected"] == true
    });
    let row = partition_json(&mirrors_json(&home, true), "metrics");
    assert_eq!(row["peer"], "edge1");
    assert_eq!(row["direction"], "receives");
    assert!(row["bytes"].as_u64().unwrap() > 0, "{row}");
    assert!(row["last_seen_ms"].as_u64().unwrap() > 0, "{row}");
    let table = ok(home.cli(&["remote", "list"], None));
    assert!(
        table.contains("PARTITION") && table.contains("metrics-0"),
        "{table}"
    );
    let edge_row = partition_json(&mirrors_json(&edge, false), "metrics");
    assert_eq!(edge_row["direction"], "sends");

    // Pause at the home: the edge stops sending, its records wait there.
    let out = ok(home.cli(&["topic", "mirror-pause", "metrics"], None));
    assert!(out.contains("mirroring paused"), "{out}");
    eventually("the edge to hear of the pause", || {
        partition_json(&mirrors_json(&edge, false), "metrics")["state"] == "paused-by-peer"
    });
    ok(edge.cli(&["produce", "metrics"], Some(&records("m", 100..150))));
    eventually("the edge's new records", || {
        leo(&edge, "metrics", 0) == Some(150)
    });
    assert_eq!(leo(&home, "metrics", 0), Some(100), "paused: nothing came");
    // Still read-only to clients while paused.
    let out = home.cli(&["produce", "metrics", "-p", "0"], Some("x\n"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("11003"), "{}", text(&out.stderr));
    // A promote cannot be in sync while paused: refused, the reason shown,
    // nothing changed.
    let out = home.cli(&["topic", "promote", "metrics", "--timeout", "2"], None);
    assert!(!out.status.success());
    let why = text(&out.stderr);
    assert!(
        why.contains("not in sync") && why.contains("metrics-0"),
        "{why}"
    );
    assert_eq!(
        partition_json(&mirrors_json(&home, true), "metrics")["state"],
        "paused"
    );

    // Resume, then promote at once: the promote waits until the backlog is
    // in, so everything the edge took before it is at the home.
    ok(home.cli(&["topic", "mirror-resume", "metrics"], None));
    let out = ok(home.cli(&["topic", "promote", "metrics", "--timeout", "30"], None));
    assert!(out.contains("mirroring promoted"), "{out}");
    // Straight from the files: every byte the edge holds is at the home.
    assert_eq!(stored(&home, "metrics", 0), stored(&edge, "metrics", 0));
    assert_eq!(consume(&home, "metrics", 0), records("m", 0..150));
    // Writable at the home; the edge shows the mirror ended.
    ok(home.cli(&["produce", "metrics", "-p", "0"], Some("local\n")));
    eventually("the local record", || leo(&home, "metrics", 0) == Some(151));
    eventually("the edge to show the mirror ended", || {
        partition_json(&mirrors_json(&edge, false), "metrics")["state"] == "ended"
    });
    // Ended, not failing: the edge's pairing with its home holds.
    eventually("the edge's SPU pairing to hold", || {
        mirrors_json(&edge, false)["mirrors"][0]["spu"] == "Connected"
    });
    // Acting again on an ended mirror: promote is done already, pause is refused.
    ok(home.cli(&["topic", "promote", "metrics"], None));
    let out = home.cli(&["topic", "mirror-pause", "metrics"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ended"), "{}", text(&out.stderr));
    // Only the receiving side acts: the edge is told where to do it.
    let out = edge.cli(&["topic", "promote", "metrics"], None);
    assert!(!out.status.success());
}

/// Home to remote: the remote receives, so the remote operates it; the
/// home follows as the sender.
#[test]
fn a_remote_pauses_resumes_and_fails_over_what_the_home_sends_it() {
    let home = LocalCluster::start(1);
    let edge = LocalCluster::start(1);
    pair(&home, &edge, "edge1");
    mirror_topic(&home, "config", &["edge1"], true);
    eventually("the edge's copy", || {
        has_topic(&edge, "config", "from-home")
    });
    ok(home.cli(&["produce", "config", "-p", "0"], Some("c0\n")));
    eventually("the home's record at the edge", || {
        leo(&edge, "config", 0) == Some(1)
    });
    // The home sends: it is told to act where the topic is received.
    let out = home.cli(&["topic", "mirror-pause", "config"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("this cluster sends topic \"config\""),
        "{}",
        text(&out.stderr)
    );

    ok(edge.cli(&["topic", "mirror-pause", "config"], None));
    eventually("the home to hear of the pause", || {
        partition_json(&mirrors_json(&home, true), "config")["state"] == "paused-by-peer"
    });
    ok(home.cli(&["produce", "config", "-p", "0"], Some("c1\n")));
    eventually("the home's new record", || {
        leo(&home, "config", 0) == Some(2)
    });
    assert_eq!(leo(&edge, "config", 0), Some(1), "paused: nothing came");
    ok(edge.cli(&["topic", "mirror-resume", "config"], None));
    eventually("the backlog at the edge", || {
        leo(&edge, "config", 0) == Some(2)
    });
    assert_eq!(stored(&edge, "config", 0), stored(&home, "config", 0));

    // Fail over at the edge: its copy takes local produce (no more 11006),
    // and the home shows the mirror ended.
    let refused = edge.cli(&["produce", "config"], Some("local\n"));
    assert!(text(&refused.stderr).contains("11006"));
    ok(edge.cli(&["topic", "failover", "config"], None));
    ok(edge.cli(&["produce", "config"], Some("local\n")));
    eventually("the local record at the edge", || {
        leo(&edge, "config", 0) == Some(3)
    });
    eventually("the home to show the mirror ended", || {
        partition_json(&mirrors_json(&home, true), "config")["state"] == "ended"
    });
    ok(home.cli(&["produce", "config", "-p", "0"], Some("c2\n")));
    assert_eq!(consume(&edge, "config", 0), "c0\nc1\nlocal\n");
}
