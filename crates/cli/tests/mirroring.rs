//! Mirroring between real clusters of real processes on loopback, set up
//! and driven through the `mirror-guard` command: a home and two edges,
//! both directions, the guard at both ends, unregistering, and every
//! process killed with SIGKILL in the middle of a stream.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{
    LocalCluster, Restarted, consume, eventually, has_topic, kill_and_restart, leo, log_lines,
    mirror_topic, ok, pair, scrape, stored, text,
};
use fluvio_controlplane_metadata::mirror::{ClientTls, Home};
use fluvio_sc_schema::remote_file::RemoteMetadataExport;

#[test]
fn a_home_and_two_edges_mirror_both_ways() {
    let home = LocalCluster::start(2);
    let edge1 = LocalCluster::start(1);
    let edge2 = LocalCluster::start(1);

    // Exporting an unregistered remote is refused.
    let out = home.cli(&["remote", "export", "edge9"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("\"edge9\" is not registered"),
        "{}",
        text(&out.stderr)
    );

    // edge1 connects with our export; edge2 with a file exactly as
    // `fluvio remote export` writes it (Fluvio's own serde type).
    let exported = pair(&home, &edge1, "edge1");
    let file: RemoteMetadataExport =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(
        (file.home.id.as_str(), file.home.remote_id.as_str()),
        ("home", "edge1")
    );
    assert_eq!(file.home.public_endpoint, home.sc);
    ok(home.cli(&["remote", "register", "edge2"], None));
    let fluvio_file = edge2.dir.path().join("from-fluvio.json");
    let ca = mg_pki::Ca::load(&home.dir.path().join("tls")).unwrap();
    let issued = ca.issue_client("edge2", mg_pki::DEFAULT_VALIDITY).unwrap();
    let tls = home.dir.path().join("tls");
    mg_pki::record_issued(&tls, "edge2", &issued.fingerprint, false).unwrap();
    let fluvios = RemoteMetadataExport {
        topics: Vec::new(),
        home: Home {
            id: "home".into(),
            remote_id: "edge2".into(),
            public_endpoint: home.sc.clone(),
            client_tls: Some(ClientTls {
                domain: mg_pki::DEFAULT_DOMAIN.into(),
                ca_cert: ca.cert_pem(),
                client_cert: issued.cert_pem,
                client_key: issued.key_pem,
            }),
        },
    };
    std::fs::write(
        &fluvio_file,
        serde_json::to_string_pretty(&fluvios).unwrap(),
    )
    .unwrap();
    ok(edge2.cli(
        &["home", "connect", "--file", fluvio_file.to_str().unwrap()],
        None,
    ));
    mirror_topic(&home, "metrics", &["edge1", "edge2"], false);
    mirror_topic(&home, "config", &["edge1", "edge2"], true);
    for edge in [&edge1, &edge2] {
        eventually("the edge's copies of the home's topics", || {
            has_topic(edge, "metrics", "to-home") && has_topic(edge, "config", "from-home")
        });
    }
    // Deleting a mirrored topic at the remote is refused.
    let out = edge1.cli(&["topic", "delete", "metrics"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot delete mirrored topic from remote"));

    // To home: each edge into its own partition, same offsets and bytes.
    ok(edge1.cli(&["produce", "metrics"], Some("a1\na2\na3\n")));
    ok(edge2.cli(&["produce", "metrics"], Some("b1\n")));
    eventually("edge1's records at the home", || {
        leo(&home, "metrics", 0) == Some(3)
    });
    eventually("edge2's records at the home", || {
        leo(&home, "metrics", 1) == Some(1)
    });
    assert_eq!(consume(&home, "metrics", 0), "a1\na2\na3\n");
    assert_eq!(consume(&home, "metrics", 1), "b1\n");
    assert_eq!(stored(&home, "metrics", 0), stored(&edge1, "metrics", 0));
    assert_eq!(stored(&home, "metrics", 1), stored(&edge2, "metrics", 0));

    // A home producer is refused with 11003, and nothing is stored.
    let out = home.cli(&["produce", "metrics", "-p", "0"], Some("from home\n"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("11003"), "{}", text(&out.stderr));
    assert_eq!(leo(&home, "metrics", 0), Some(3));
    // ... and logged at info level, naming who was refused.
    let logs = std::fs::read_dir(home.dir.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    let line = logs
        .lines()
        .find(|l| l.contains("refused produce"))
        .expect("the refusal is logged");
    for part in [
        "INFO",
        "topic=\"metrics\"",
        "partition=0",
        "code=11003",
        "client_id=",
        "peer=127.0.0.1:",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }

    // Home to remote: partition i flows to remote i; the targets refuse produce.
    ok(home.cli(&["produce", "config", "-p", "0"], Some("c1\nc2\n")));
    ok(home.cli(&["produce", "config", "-p", "1"], Some("d1\n")));
    eventually("config at edge1", || leo(&edge1, "config", 0) == Some(2));
    eventually("config at edge2", || leo(&edge2, "config", 0) == Some(1));
    assert_eq!(consume(&edge1, "config", 0), "c1\nc2\n");
    assert_eq!(consume(&edge2, "config", 0), "d1\n");
    assert_eq!(stored(&edge1, "config", 0), stored(&home, "config", 0));
    let out = edge1.cli(&["produce", "config"], Some("from edge\n"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("11006"), "{}", text(&out.stderr));
    // Nothing echoes back: the home's to-home partitions did not grow.
    assert_eq!(leo(&home, "metrics", 0), Some(3));
    assert_eq!(leo(&home, "config", 0), Some(2));

    // StartMirror as an unknown remote, or for a replica no home partition
    // mirrors for that remote: the home SPU process closes that connection
    // and goes on mirroring.
    let home_spu = home.file()["spus"][0]["public"]
        .as_str()
        .unwrap()
        .to_string();
    for (remote, replica) in [("edge9", "metrics-0"), ("edge1", "other-0")] {
        let mut socket = std::net::TcpStream::connect(&home_spu).unwrap();
        socket.write_all(&start_mirror(remote, replica)).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        let read = socket.read_to_end(&mut rest);
        assert!(
            matches!(read, Ok(0)),
            "the home SPU closes the connection: {read:?}"
        );
    }
    ok(edge1.cli(&["produce", "metrics"], Some("a3b\n")));
    eventually("the home SPU still mirrors", || {
        leo(&home, "metrics", 0) == Some(4)
    });

    // Pairing, as `remote list` and `home status` show it.
    eventually("the home sees both remotes paired", || {
        let list = text(&home.cli(&["remote", "list"], None).stdout);
        ["edge1", "edge2"].iter().all(|id| {
            list.lines().any(|l| {
                l.starts_with(&format!("  {id} ")) && l.contains("Connected  Connected  online")
            })
        })
    });
    let status = ok(edge1.cli(&["home", "status"], None));
    assert!(
        status.contains("edge1 ->") && status.contains("online"),
        "{status}"
    );

    // Unregister edge2: its stream and links end, and its partition takes
    // no more of its records; edge1 goes on.
    ok(home.cli(&["remote", "unregister", "edge2"], None));
    eventually("edge2 hears it is no longer registered", || {
        text(&edge2.cli(&["home", "status"], None).stdout).contains("not registered")
    });
    let refused = log_lines(&home, "refusing mirror connection");
    ok(edge2.cli(&["produce", "metrics"], Some("b2\n")));
    eventually("edge2's SPU to be refused again after its produce", || {
        log_lines(&home, "refusing mirror connection") > refused + 1
    });
    assert_eq!(
        leo(&home, "metrics", 1),
        Some(1),
        "edge2's partition took nothing more"
    );
    assert_eq!(consume(&home, "metrics", 1), "b1\n", "its records are kept");
    ok(edge1.cli(&["produce", "metrics"], Some("a4\n")));
    eventually("edge1 still mirrors", || {
        leo(&home, "metrics", 0) == Some(5)
    });
}

#[test]
fn every_process_killed_mid_stream_loses_and_doubles_nothing() {
    const CHUNKS: usize = 5;
    const PER_CHUNK: usize = 20_000;
    let home = LocalCluster::start(1);
    let edge = LocalCluster::start(1);
    let mut restarted = Restarted::default();
    pair(&home, &edge, "edge1");
    mirror_topic(&home, "stream", &["edge1"], false);
    eventually("the edge's copy", || has_topic(&edge, "stream", "to-home"));

    // The home SPU, the edge SPU, the home SC, the edge SC: each killed
    // right after a chunk is acknowledged at the edge, while it mirrors.
    let victims: [(&LocalCluster, usize); CHUNKS - 1] =
        [(&home, 1), (&edge, 1), (&home, 0), (&edge, 0)];
    let mut produced = 0usize;
    for chunk in 0..CHUNKS {
        let lines: String = (produced..produced + PER_CHUNK)
            .map(|n| format!("record-{n:06}\n"))
            .collect();
        ok(edge.cli(&["produce", "stream"], Some(&lines)));
        produced += PER_CHUNK;
        if let Some((cluster, index)) = victims.get(chunk) {
            kill_and_restart(cluster, *index, &mut restarted);
        }
    }
    let total = produced as i64;
    eventually("every record at the home", || {
        stored(&home, "stream", 0).len() == stored(&edge, "stream", 0).len()
            && leo(&home, "stream", 0) == Some(total)
    });
    // Byte for byte: the same batches at the same offsets, none lost, none
    // doubled, contiguous.
    assert_eq!(stored(&home, "stream", 0), stored(&edge, "stream", 0));
    let values = consume(&home, "stream", 0);
    let expected: String = (0..produced).map(|n| format!("record-{n:06}\n")).collect();
    assert_eq!(values.len(), expected.len());
    assert!(
        values == expected,
        "the home's records differ from what the edge took"
    );
}

/// A StartMirror frame (api key 2000, version 25), encoded by hand as the
/// wire reference lays it out: header, then two strings.
fn start_mirror(remote: &str, replica: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut body = Vec::new();
    body.extend_from_slice(&2000u16.to_be_bytes());
    body.extend_from_slice(&25i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    string(&mut body, "test");
    string(&mut body, replica);
    string(&mut body, remote);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Every line of every log of `cluster`, and what its list commands print.
fn everything_shown(cluster: &LocalCluster) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(cluster.dir.path().join("logs")).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for args in [
        &["remote", "list"][..],
        &["topic", "list"],
        &["partition", "list"],
    ] {
        all.push_str(&text(&cluster.cli(args, None).stdout));
    }
    let file = cluster.file();
    let mut endpoints = vec![file["sc_metrics"].as_str().unwrap().to_string()];
    for spu in file["spus"].as_array().unwrap() {
        endpoints.push(spu["metrics"].as_str().unwrap().to_string());
    }
    for endpoint in endpoints {
        all.push_str(&scrape(&endpoint));
    }
    all
}

#[test]
fn a_remote_is_who_its_certificate_says_at_the_sc_and_no_key_is_shown() {
    let home = LocalCluster::start(1);
    let edge1 = LocalCluster::start(1);
    let impostor = LocalCluster::start(1);
    pair(&home, &edge1, "edge1");
    ok(home.cli(&["remote", "register", "edge2"], None));
    mirror_topic(&home, "metrics", &["edge1", "edge2"], false);
    mirror_topic(&home, "secret-of-edge2", &["edge2"], false);
    eventually("edge1's copy", || has_topic(&edge1, "metrics", "to-home"));

    // Edge1's certificate, with the file edited to claim edge2.
    let stolen = home.dir.path().join("edge1.json");
    let claim: String = std::fs::read_to_string(&stolen)
        .unwrap()
        .replace("\"remoteId\": \"edge1\"", "\"remoteId\": \"edge2\"");
    assert!(claim.contains("\"remoteId\": \"edge2\""));
    let forged = impostor.dir.path().join("forged.json");
    std::fs::write(&forged, claim).unwrap();
    ok(impostor.cli(
        &["home", "connect", "--file", forged.to_str().unwrap()],
        None,
    ));
    eventually("the home SC refuses the claim", || {
        log_lines(&home, "refusing mirroring connection") > 0
    });
    let refusals = std::fs::read_to_string(home.dir.path().join("logs/sc.log")).unwrap();
    let refusal = refusals
        .lines()
        .find(|l| l.contains("refusing mirroring connection"))
        .unwrap();
    assert!(
        refusal.contains("edge2") && refusal.contains("edge1") && refusal.contains("127.0.0.1"),
        "logged with the peer and the claimed and proven ids: {refusal}"
    );
    // Counted at the SC, by reason.
    let sc_metrics = scrape(home.file()["sc_metrics"].as_str().unwrap());
    assert!(
        sc_metrics.contains(
            "mirror_guard_sc_mirror_connections_refused_total{reason=\"the certificate names another remote\"}"
        ),
        "{sc_metrics}"
    );
    // It got nothing of edge2's topics.
    let list = text(&impostor.cli(&["topic", "list"], None).stdout);
    assert!(
        !list.contains("secret-of-edge2") && !list.contains("metrics"),
        "{list}"
    );

    // No key material anywhere an operator looks.
    for cluster in [&home, &edge1, &impostor] {
        let shown = everything_shown(cluster);
        assert!(!shown.contains('\x1b'), "log files are plain text");
        assert!(!shown.contains("-----BEGIN"), "PEM material shown");
        assert!(!shown.contains("PRIVATE KEY"), "key material shown");
    }
    // And the remote keeps it in files of mode 0600, not in its metadata.
    use std::os::unix::fs::PermissionsExt;
    let secrets = edge1.dir.path().join("sc/secrets/homes/home");
    for file in ["ca.pem", "client.pem", "client.key", "domain"] {
        let mode = std::fs::metadata(secrets.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let metadata = std::fs::read_dir(edge1.dir.path().join("sc"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "secrets"))
        .flat_map(|dir| walk(&dir))
        .map(|file| std::fs::read_to_string(file).unwrap_or_default())
        .collect::<String>();
    assert!(!metadata.contains("PRIVATE KEY"));
}

fn walk(path: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flat_map(|e| walk(&e.unwrap().path())).collect(),
        Err(_) => vec![path.to_path_buf()],
    }
}
