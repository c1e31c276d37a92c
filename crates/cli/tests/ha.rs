//! SC high availability with real processes: a three-member etcd on
//! loopback, two `mirror-guard sc` processes on it, an SPU and the CLI given
//! both SCs. The active SC is killed with SIGKILL during a stream of role
//! changes and produce traffic: the standby takes over, no change that was
//! acknowledged is lost, the SPU follows the new SC and never fails open in
//! between; then etcd's leading member is killed and the SC keeps working.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{BIN, eventually, produce_to_spu, text};
use mg_testkit::etcd::Etcd;

/// Processes started here, killed when the test ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serves(addr: &str) -> bool {
    TcpStream::connect(addr).is_ok()
}

fn cli(scs: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env("MIRROR_GUARD_SC", scs);
    common::finish(command, stdin)
}

#[test]
fn the_standby_sc_takes_over_and_nothing_committed_is_lost() {
    let mut etcd = Etcd::cluster(3);
    let url = etcd.url();
    let dir = tempfile::tempdir().unwrap();
    let base = mg_testkit::port_base();
    let addr = |offset: u16| format!("127.0.0.1:{}", base + offset);
    let (spu_public, scs) = (addr(4), format!("{},{}", addr(0), addr(2)));
    let mut processes = Processes(Vec::new());
    let sc = |name: &str, public: &str, private: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        Command::new(BIN)
            .args(["sc", "--store", &url, "--etcd-prefix", "/mirror-guard/ha"])
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(["--public", public, "--private", private])
            .args(["--spu", &format!("5001={spu_public}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    processes.0.push(sc("sc-a", &addr(0), &addr(1)));
    eventually("SC a elected and serving", || serves(&addr(0)));
    processes.0.push(sc("sc-b", &addr(2), &addr(3)));
    let spu = Command::new(BIN)
        .args(["spu", "--id", "5001", "--listen", &spu_public])
        .arg("--data-dir")
        .arg(dir.path().join("spu"))
        .args(["--sc", &format!("{},{}", addr(1), addr(3))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    processes.0.push(spu);
    assert!(!serves(&addr(2)), "the standby serves nothing");

    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = cli(&scs, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    ok(&["topic", "create", "plain"], None);
    ok(&["remote", "register", "edge1"], None);
    let remotes = dir.path().join("remotes.json");
    std::fs::write(&remotes, r#"["edge1"]"#).unwrap();
    ok(
        &[
            "topic",
            "create",
            "m",
            "--mirror-apply",
            remotes.to_str().unwrap(),
        ],
        None,
    );
    eventually("the SPU leads the topics", || {
        produce_to_spu(&spu_public, "plain") == 0
    });
    assert_eq!(produce_to_spu(&spu_public, "m"), 11003);

    // A stream of role changes (topic creations) and of produce traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let changes = {
        let (stop, created, scs) = (stop.clone(), created.clone(), scs.clone());
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("r{i}");
                if cli(&scs, &["topic", "create", &name], None)
                    .status
                    .success()
                {
                    created.lock().unwrap().push(name);
                }
            }
        })
    };
    let traffic = {
        let (stop, spu) = (stop.clone(), spu_public.clone());
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                codes.push((produce_to_spu(&spu, "plain"), produce_to_spu(&spu, "m")));
            }
            codes
        })
    };
    eventually("a few changes", || created.lock().unwrap().len() >= 3);

    // SIGKILL, and reaped: our own child.
    processes.0[0].kill().unwrap();
    processes.0[0].wait().unwrap();
    let killed = Instant::now();
    eventually("the standby to take over", || serves(&addr(2)));
    let takeover = killed.elapsed();
    let before = created.lock().unwrap().len();
    eventually("changes through the new SC", || {
        created.lock().unwrap().len() >= before + 3
    });
    stop.store(true, Ordering::SeqCst);
    changes.join().unwrap();
    let codes = traffic.join().unwrap();

    // The SPU served throughout with its last table: never failed open.
    assert!(codes.iter().all(|(_, m)| *m == 11003), "{codes:?}");
    assert!(codes.iter().all(|(plain, _)| *plain == 0), "{codes:?}");
    // Every acknowledged change is there.
    let listed = text(&cli(&scs, &["topic", "list"], None).stdout);
    for name in created.lock().unwrap().iter() {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing after the takeover:\n{listed}"
        );
    }
    // The SPU follows the new SC: it leads a topic created after the takeover.
    let last = created.lock().unwrap().last().unwrap().clone();
    eventually("the SPU to lead the newest topic", || {
        produce_to_spu(&spu_public, &last) == 0
    });
    // Within the lease (the standby polls every 250 ms, then loads).
    let bound = mg_sc::etcd::LEADER_TTL + std::time::Duration::from_secs(2);
    assert!(
        takeover < bound,
        "took over after {takeover:?} (lease {:?})",
        mg_sc::etcd::LEADER_TTL
    );
    eprintln!("takeover after SIGKILL of the active SC: {takeover:?}");

    // One etcd member gone, the one that leads etcd: the SC keeps working.
    // Its next commit meets the election (a member that forwarded it to the
    // dead leader never answers): it is tried again at another member and
    // recognised there if the first try was applied after all.
    etcd.kill(etcd.leader());
    let out = cli(&scs, &["topic", "create", "after-member-loss"], None);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(dir.path().join("sc-b.log")).unwrap()
    );
    let listed = text(&cli(&scs, &["topic", "list"], None).stdout);
    assert!(listed.contains("after-member-loss"), "{listed}");
}
