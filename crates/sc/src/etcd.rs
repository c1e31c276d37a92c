//! The SC's metadata on etcd v3: the same envelopes as the files, one key
//! per object, and every change one etcd transaction.
//!
//! ```text
//! <prefix>/CURRENT                      the active generation (absent: "metadata")
//! <prefix>/<generation>/<kind>/<name>   one object's envelope, as in its file
//! ```
//!
//! The SC's logic is synchronous (a change is planned, persisted, applied
//! under its writer lock); etcd's client is async. The store runs the
//! client on a small runtime of its own and waits for each call, so it can
//! be called from any thread, async worker or not, like a file write.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Mutex;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{Object, Scanned, decode};

/// How long one etcd call may take before it fails the change.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The generation used before any upgrade (as with files).
pub const FIRST_GENERATION: &str = "metadata";
/// The leader's lease: a standby takes over at most this long (plus one
/// [`STANDBY_POLL`]) after the leader stops renewing it. The leader renews
/// it every [`RENEW_EVERY`], so a renewal that fails (an etcd member gone)
/// is tried again several times before the lease could run out.
pub const LEADER_TTL: Duration = Duration::from_secs(4);
/// How often the leader renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long one renewal may take before it is tried again.
const RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a standby looks whether the leader key is gone.
const STANDBY_POLL: Duration = Duration::from_millis(250);

/// Where on etcd, and under which prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client endpoints, `host:port` each.
    pub endpoints: Vec<String>,
    /// The key prefix of this cluster, e.g. `/mirror-guard/prod`.
    pub prefix: String,
}

impl EtcdConfig {
    /// Parses `etcd://HOST:PORT[,HOST:PORT…]`.
    pub fn parse(url: &str, prefix: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{url:?}: expected etcd://HOST:PORT[,HOST:PORT…]"))?;
        let endpoints: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() || endpoints.iter().any(|e| !e.contains(':')) {
            return Err(format!("{url:?}: every endpoint needs a host and a port"));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(format!(
                "etcd prefix {prefix:?}: must start with / and name something"
            ));
        }
        Ok(Self {
            endpoints,
            prefix: prefix.to_string(),
        })
    }
}

/// A connection to etcd, under one prefix and generation.
pub struct EtcdStore {
    /// Runs the client; shut down in the background on drop, so a store
    /// dropped inside an async context does not block it.
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    config: EtcdConfig,
    generation: String,
    /// Once elected: the leader key and this SC's lease on it. Every commit
    /// is then conditioned on the key still being held under that lease.
    leadership: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EtcdStore({} under {}/{})",
            self.config.endpoints.join(","),
            self.config.prefix,
            self.generation
        )
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn etcd_error(err: etcd_client::Error) -> io::Error {
    io::Error::other(format!("etcd: {err}"))
}

impl EtcdStore {
    /// Connects, and reads which generation is current.
    pub fn open(config: EtcdConfig) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()?;
        let endpoints = config.endpoints.clone();
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(CALL_TIMEOUT);
        let client = run(&runtime, async move {
            Client::connect(endpoints, Some(options))
                .await
                .map_err(etcd_error)
        })?;
        let mut store = Self {
            runtime: Some(runtime),
            client,
            config,
            generation: FIRST_GENERATION.to_string(),
            leadership: Mutex::new(None),
        };
        if let Some(current) = store.get(&store.current_key())? {
            store.generation = String::from_utf8(current)
                .map_err(|_| io::Error::other(format!("{}: not UTF-8", store.current_key())))?;
        }
        Ok(store)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// The key naming the current generation.
    pub fn current_key(&self) -> String {
        format!("{}/CURRENT", self.config.prefix)
    }

    /// The prefix of `kind`'s keys in the current generation.
    fn kind_prefix(&self, kind: &str) -> String {
        format!("{}/{}/{kind}/", self.config.prefix, self.generation)
    }

    /// The key of one object.
    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{name}", self.kind_prefix(kind))
    }

    /// Where this store is, for messages.
    pub fn describe(&self) -> String {
        format!(
            "etcd://{} under {}/{}",
            self.config.endpoints.join(","),
            self.config.prefix,
            self.generation
        )
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let (mut client, key) = (self.client.clone(), key.to_string());
        run(self.runtime(), async move {
            let response = client.get(key, None).await.map_err(etcd_error)?;
            Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    /// Every object of a kind, and what each holds; an unreadable one is
    /// named by its key.
    pub fn scan<T: Object>(&self) -> io::Result<Vec<Scanned<T>>> {
        let (mut client, prefix) = (self.client.clone(), self.kind_prefix(T::KIND));
        let kvs = run(self.runtime(), async move {
            let options = GetOptions::new().with_prefix();
            let response = client
                .get(prefix, Some(options))
                .await
                .map_err(etcd_error)?;
            Ok(response
                .kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                .collect::<Vec<_>>())
        })?;
        Ok(kvs
            .into_iter()
            .map(|(key, value)| {
                let path = PathBuf::from(String::from_utf8_lossy(&key).into_owned());
                let stored = match std::str::from_utf8(&value) {
                    Ok(text) => decode(text),
                    Err(err) => crate::store::Stored::Unreadable(format!("not UTF-8: {err}")),
                };
                Scanned { path, stored }
            })
            .collect())
    }

    /// The key the elected SC holds under its lease.
    pub fn leader_key(&self) -> String {
        format!("{}/LEADER", self.config.prefix)
    }

    /// Waits until this SC is elected (it holds the leader key under a
    /// lease of [`LEADER_TTL`]), then keeps the lease alive; from then on
    /// every commit is conditioned on holding it, so an SC that lost it
    /// (paused past its lease, cut off) writes nothing more. Returns a
    /// receiver that turns `true` when the lease is lost. `candidate` is
    /// what the key says about who leads.
    pub fn campaign(&self, candidate: &str) -> io::Result<watch::Receiver<bool>> {
        let (client, key, candidate) = (
            self.client.clone(),
            self.leader_key(),
            candidate.to_string(),
        );
        let ttl = LEADER_TTL.as_secs() as i64;
        let lease = run_unbounded(self.runtime(), async move {
            elect(client, key, candidate, ttl).await.map_err(etcd_error)
        })?;
        *self.leadership.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((self.leader_key(), lease));
        let (lost_tx, lost) = watch::channel(false);
        let client = self.client.clone();
        self.runtime().spawn(async move {
            let reason = keep_alive(client, lease, ttl).await;
            warn!(lease, %reason, "lost the leadership");
            let _ = lost_tx.send(true);
        });
        Ok(lost)
    }

    /// Applies `writes` in one transaction: all of them, or none.
    pub fn commit(&self, writes: Vec<crate::persist::Write>) -> io::Result<()> {
        let ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|write| match write {
                crate::persist::Write::Put { kind, name, bytes } => {
                    TxnOp::put(self.key(kind, &name), bytes, None)
                }
                crate::persist::Write::Delete { kind, name } => {
                    TxnOp::delete(self.key(kind, &name), None)
                }
            })
            .collect();
        let leadership = self
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let txn = match leadership {
            Some((key, lease)) => Txn::new().when([Compare::lease(key, CompareOp::Equal, lease)]),
            None => Txn::new(),
        };
        let mut client = self.client.clone();
        run(self.runtime(), async move {
            let response = client.txn(txn.and_then(ops)).await.map_err(etcd_error)?;
            if response.succeeded() {
                Ok(())
            } else {
                Err(io::Error::other(
                    "etcd: this SC no longer holds the leadership (its lease is gone): nothing was written",
                ))
            }
        })
    }
}

/// Holds the leader key under a new lease once it is free; returns the lease.
async fn elect(
    mut client: Client,
    key: String,
    candidate: String,
    ttl: i64,
) -> Result<i64, etcd_client::Error> {
    let mut announced = false;
    loop {
        let lease = client.lease_grant(ttl, None).await?.id();
        let claim = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                candidate.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if client.txn(claim).await?.succeeded() {
            info!(%key, lease, "elected: this SC leads");
            return Ok(lease);
        }
        let _ = client.lease_revoke(lease).await;
        // Someone leads: stand by until its key is gone (deleted, or its
        // lease expired).
        loop {
            let current = client.get(key.clone(), None).await?;
            let Some(leader) = current.kvs().first() else {
                break;
            };
            if !announced {
                let leader = leader.value_str().unwrap_or("?");
                info!(%key, leader, "standing by: another SC leads");
                announced = true;
            }
            tokio::time::sleep(STANDBY_POLL).await;
        }
    }
}

/// Renews `lease` every [`RENEW_EVERY`] for as long as it can; returns
/// why it stopped. A failed renewal (a member of the etcd cluster gone, a
/// stream cut) is retried on a new stream while the lease is surely still
/// valid; only then is the leadership given up.
async fn keep_alive(mut client: Client, lease: i64, ttl: i64) -> String {
    let every = RENEW_EVERY;
    let mut valid_until = tokio::time::Instant::now() + Duration::from_secs(ttl as u64);
    let mut stream = None;
    loop {
        let sent = tokio::time::Instant::now();
        let renewed = async {
            if stream.is_none() {
                stream = Some(client.lease_keep_alive(lease).await?);
            }
            let (keeper, answers) = stream.as_mut().expect("just opened");
            keeper.keep_alive().await?;
            answers.message().await
        };
        match tokio::time::timeout(RENEW_TIMEOUT, renewed).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                valid_until = sent + Duration::from_secs(answer.ttl() as u64);
                tokio::time::sleep(every).await;
            }
            Ok(Ok(Some(_))) => return "the lease expired".into(),
            failed => {
                stream = None;
                let why = match failed {
                    Ok(Err(err)) => err.to_string(),
                    Ok(Ok(None)) => "the keep-alive stream ended".into(),
                    _ => "no answer to a keep-alive".into(),
                };
                if tokio::time::Instant::now() + RENEW_TIMEOUT >= valid_until {
                    return format!("could not renew the lease before it expired: {why}");
                }
                warn!(lease, %why, "renewing the leader lease again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs `work` on the store's runtime and waits for it, however long.
fn run_unbounded<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    let (done, result) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = done.send(work.await);
    });
    result
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("etcd: the client's runtime stopped")))
}

/// Runs `work` on the store's runtime and waits for it, from any thread.
fn run<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    let (done, result) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let outcome = tokio::time::timeout(CALL_TIMEOUT * 2, work)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "etcd: no answer")));
        let _ = done.send(outcome);
    });
    result
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("etcd: the client's runtime stopped")))
}
