//! A real etcd for tests: members on loopback, in a temporary directory, on
//! free ports, each awaited until it says it serves clients, and stopped by
//! its pid. Needs the `etcd` binary (Debian's `etcd-server`; `.ci/run`
//! installs it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What etcd prints once a member serves clients.
const READY: &str = "ready to serve client requests";
/// How long a member may take to get there.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member.
struct Member {
    child: Option<Child>,
    client: u16,
}

/// A running etcd cluster of one or more members.
pub struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// One member.
    pub fn start() -> Self {
        Self::cluster(1)
    }

    /// `size` members forming one cluster.
    pub fn cluster(size: usize) -> Self {
        Self::cluster_with(size, &[])
    }

    /// `size` members, each also given `extra` flags (which override the
    /// defaults here, e.g. `--max-txn-ops`).
    pub fn cluster_with(size: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<(u16, u16)> = (0..size)
            .map(|_| {
                let base = crate::port_base();
                (base, base + 1)
            })
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        let mut ready = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let mut child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                // Big topics are one transaction of many writes.
                .args(["--max-txn-ops", "100000"])
                .args(["--max-request-bytes", "67108864"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the etcd binary (Debian's etcd-server) must be installed");
            ready.push(watch_log(&mut child, i));
            members.push(Member {
                child: Some(child),
                client: *client,
            });
        }
        for (i, ready) in ready.into_iter().enumerate() {
            ready
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("etcd member m{i} did not start serving"));
        }
        Self { members, _dir: dir }
    }

    /// The client endpoints (`host:port`) of the members still running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// Every member's client endpoint, running or not, as `etcd://a,b,c`.
    pub fn url(&self) -> String {
        let all: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}", all.join(","))
    }

    /// The pid of member `index`, while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members[index].child.as_ref().map(Child::id)
    }

    /// The index of the member that is etcd's (raft) leader now, as that
    /// member itself says.
    pub fn leader(&self) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            for (index, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                let endpoint = format!("127.0.0.1:{}", member.client);
                let Ok(mut client) = etcd_client::Client::connect([endpoint], None).await else {
                    continue;
                };
                let Ok(status) = client.status().await else {
                    continue;
                };
                let me = status.header().map(|h| h.member_id());
                if me == Some(status.leader()) {
                    return index;
                }
            }
            panic!("no etcd member says it leads");
        })
    }

    /// Kills member `index` with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Keys and values, read or written by the tests directly (not through the
/// SC), each call on a runtime of its own so that plain tests can use them.
impl Etcd {
    fn client<T>(
        &self,
        work: impl AsyncFnOnce(etcd_client::Client) -> Result<T, etcd_client::Error>,
    ) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let client = etcd_client::Client::connect(self.endpoints(), None)
                .await
                .expect("etcd answers");
            work(client).await.expect("the etcd call succeeds")
        })
    }

    /// Writes `key`.
    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.to_string(), value.into());
        self.client(async move |mut c| c.put(key, value, None).await.map(drop));
    }

    /// Every key under `prefix` with its value.
    pub fn snapshot(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let prefix = prefix.to_string();
        self.client(async move |mut c| {
            let found = c
                .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                .await?;
            Ok(found
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        kv.value().to_vec(),
                    )
                })
                .collect())
        })
    }

    /// Loads an SC's metadata directory as the SC would store it on etcd:
    /// `<dir>/<generation>/<kind>/<name>.json` as
    /// `<prefix>/<generation>/<kind>/<name>`, and `<dir>/CURRENT`.
    pub fn load_files(&self, prefix: &str, dir: &Path) {
        let mut keys = Vec::new();
        for generation in std::fs::read_dir(dir).expect("the metadata directory") {
            let generation = generation.expect("an entry").path();
            let gen_name = generation
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !generation.is_dir() {
                if gen_name == "CURRENT" {
                    keys.push((
                        format!("{prefix}/CURRENT"),
                        std::fs::read(&generation).unwrap(),
                    ));
                }
                continue;
            }
            for kind in std::fs::read_dir(&generation).unwrap() {
                let kind = kind.unwrap().path();
                let kind_name = kind.file_name().unwrap().to_string_lossy().into_owned();
                for object in std::fs::read_dir(&kind).unwrap() {
                    let object = object.unwrap().path();
                    let name = object.file_stem().unwrap().to_string_lossy().into_owned();
                    keys.push((
                        format!("{prefix}/{gen_name}/{kind_name}/{name}"),
                        std::fs::read(&object).unwrap(),
                    ));
                }
            }
        }
        self.client(async move |mut c| {
            for (key, value) in keys {
                c.put(key, value, None).await?;
            }
            Ok(())
        });
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// Drains the member's log for as long as it runs (a full pipe would stop
/// it), and says when it serves clients.
fn watch_log(child: &mut Child, index: usize) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::Builder::new()
        .name(format!("etcd-m{index}-log"))
        .spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(READY)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        })
        .expect("a log thread");
    rx
}
