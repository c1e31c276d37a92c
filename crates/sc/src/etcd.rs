//! The SC's metadata on etcd v3: the same envelopes as the files, one key
//! per object, and every change one etcd transaction.
//!
//! ```text
//! <prefix>/CURRENT                      the active generation (absent: "metadata")
//! <prefix>/UPGRADE                      an upgrade's record, as the file `UPGRADE`
//! <prefix>/LEADER                       the elected SC, under its lease
//! <prefix>/COMMITTED                    the token of the last change committed
//! <prefix>/<generation>/<kind>/<name>   one object's envelope, as in its file
//! <prefix>/quarantine/<generation>/<kind>/<name>   set aside by `resume --skip-unreadable`
//! ```
//!
//! Every commit is conditioned on `CURRENT` still naming the generation the
//! store opened on (so an SC never writes into a generation an upgrade
//! switched away from), once elected on holding the leader's lease, and on
//! `COMMITTED` still holding the token of the commit before it; it writes
//! its own token there. So a commit applies at most once, and one whose
//! answer was lost (an etcd member killed mid-call loses the proposals it
//! forwarded) is tried again at the next member and then recognised by its
//! token: the caller learns whether it was written, instead of being told
//! that it may or may not have been.
//! Scans go in pages of [`SCAN_PAGE`] keys: one range of 100k partitions
//! would exceed what a gRPC message may carry.
//!
//! The SC's logic is synchronous (a change is planned, persisted, applied
//! under its writer lock); etcd's client is async. The store runs the
//! client on a small runtime of its own and waits for each call, so it can
//! be called from any thread, async worker or not, like a file write.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{Object, Scanned, decode};

/// How long one etcd call may take, over every member it tries, before it
/// fails the change.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit may take, over every member it tries. Longer than
/// other calls: a member that forwarded the commit to an etcd leader that
/// died answers nothing until etcd's own request timeout (about 7 s), so
/// the commit moves on after [`ATTEMPT_TIMEOUT`] and needs time for etcd
/// to elect a new leader (a second or two, more on a loaded machine).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one try at one member may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a call waits before going round the members again, once each
/// failed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long connecting to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The generation used before any upgrade (as with files).
pub const FIRST_GENERATION: &str = "metadata";
/// The leader's lease: a standby takes over at most this long (plus one
/// [`STANDBY_POLL`]) after the leader stops renewing it. The leader renews
/// it every [`RENEW_EVERY`]; a renewal that fails (an etcd member gone) is
/// tried again at the next member at once, for up to three seconds before
/// the lease could run out: long enough for etcd to elect a new leader
/// when the member killed was its leader (with 3 s, an SC on a loaded
/// machine gave its lease up during such an election).
pub const LEADER_TTL: Duration = Duration::from_secs(4);
/// How often the leader renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long one renewal may take before it is tried again.
const RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a standby looks whether the leader key is gone.
const STANDBY_POLL: Duration = Duration::from_millis(250);
/// Keys per range request of a scan.
pub const SCAN_PAGE: i64 = 1000;
/// Writes per transaction when a whole generation is written (an upgrade,
/// a migration): below etcd's default `--max-txn-ops` of 128.
pub const BULK_TXN_OPS: usize = 100;

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
    members: Arc<Members>,
    config: EtcdConfig,
    generation: String,
    /// `CURRENT` as the store found it: every commit is conditioned on it.
    generation_guard: Compare,
    /// Once elected: the leader key and this SC's lease on it. Every commit
    /// is then conditioned on the key still being held under that lease.
    leadership: Mutex<Option<(String, i64)>>,
    /// Once elected: how to give the leadership up when a commit's outcome
    /// stays unknown.
    fence: Mutex<Option<Fence>>,
    /// What `COMMITTED` holds as far as this store knows (`Some(None)`:
    /// absent), or `None` when it must be read before the next commit
    /// (opened, elected, or a commit failed).
    last_commit: Mutex<Option<Option<Vec<u8>>>>,
    /// Makes this store's commit tokens unique: the process, the time it
    /// opened, and a count.
    token_prefix: String,
    commits: AtomicU64,
}

/// What gives the leadership up: the task renewing the lease, and the
/// channel that tells the SC it no longer leads.
struct Fence {
    lease: i64,
    keep_alive: tokio::task::AbortHandle,
    lost: watch::Sender<bool>,
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

/// The members of the etcd cluster, one client each, and the one that
/// answered last: calls go there, and on to the next member when one is
/// down or cut off from the others, round them again (for up to
/// [`CALL_TIMEOUT`]) while none can take the call. (One client
/// over every endpoint, as etcd-client balances them, hands a call to a
/// dead member and fails it: an SC could not even start with one member
/// of three down.)
///
/// A read moves on after any failure to reach a member, and so does a
/// commit: its token compare makes it apply at most once. Any other write
/// moves on only when it provably was not applied (the member could not be
/// reached, or had no leader): a write that timed out may have been
/// applied, and trying it elsewhere could apply it twice, or fail a compare
/// it already passed.
struct Members {
    clients: Vec<(String, Client)>,
    preferred: AtomicUsize,
}

/// What a call is, for when it may move on to another member.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Moves on after any failure to reach a member.
    Read,
    /// Moves on only when it provably was not applied.
    Write,
    /// A write that applies at most once however often it is sent (a
    /// commit, conditioned on the token it replaces): moves on after any
    /// failure to hear from a member, as a read does.
    Guarded,
}

impl Call {
    /// How long the call may take over every member it tries.
    fn deadline(self) -> Duration {
        match self {
            Self::Guarded => COMMIT_TIMEOUT,
            Self::Read | Self::Write => CALL_TIMEOUT,
        }
    }
}

impl Members {
    async fn connect(endpoints: &[String]) -> Result<Self, etcd_client::Error> {
        // The client's own request timeout is the whole call's: the limit
        // of one try is set in `call` (shorter for reads only).
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(CALL_TIMEOUT);
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            // Connects lazily: a member that is down now is tried later.
            let client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            clients.push((endpoint.clone(), client));
        }
        Ok(Self {
            clients,
            preferred: AtomicUsize::new(0),
        })
    }

    /// Runs `call` on the preferred member, then on the others in turn
    /// while each is unreachable (see the type's docs); once every member
    /// failed so, it pauses and goes round again until [`CALL_TIMEOUT`] is
    /// spent: an etcd leader election (a member killed) leaves every
    /// member without a leader for a second or so.
    async fn call<T, F, Fut>(&self, kind: Call, mut call: F) -> io::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.clients.len();
        let limit = kind.deadline();
        let deadline = tokio::time::Instant::now() + limit;
        // A read (or a guarded write) gives up on a silent member sooner; a
        // silent write may be applied yet, so it is never tried elsewhere:
        // it waits.
        let attempt = match kind {
            Call::Read | Call::Guarded => ATTEMPT_TIMEOUT,
            Call::Write => CALL_TIMEOUT,
        };
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures: Vec<Option<String>> = vec![None; count];
        // Whether a guarded write may have reached etcd on some try.
        let mut in_doubt = false;
        for step in 0.. {
            let index = (first + step) % count;
            let (endpoint, client) = &self.clients[index];
            let budget =
                attempt.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let why = match tokio::time::timeout(budget, call(client.clone())).await {
                Ok(Ok(value)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(err)) if moves_on(&err, kind) => {
                    in_doubt |= kind == Call::Guarded && !never_sent(&err);
                    err.to_string()
                }
                Ok(Err(err)) => return Err(etcd_error(err)),
                Err(_) if kind != Call::Write => {
                    in_doubt |= kind == Call::Guarded;
                    format!("no answer within {budget:?}")
                }
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "etcd: no answer from {endpoint} within {budget:?} (the write may or may not have been applied)"
                        ),
                    ));
                }
            };
            warn!(member = %endpoint, %why, "etcd member unavailable: trying the next");
            failures[index] = Some(format!("{endpoint}: {why}"));
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if (step + 1) % count == 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        let failures = failures
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        Err(if in_doubt {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "etcd: no member answered within {limit:?}, and the write may or may not have been applied ({failures})"
                ),
            )
        } else {
            io::Error::other(format!(
                "etcd: no member answered within {limit:?} ({failures})"
            ))
        })
    }

    /// The client of the member after `index`, and its index.
    fn next(&self, index: usize) -> (usize, Client) {
        let next = (index + 1) % self.clients.len();
        (next, self.clients[next].1.clone())
    }

    fn preferred(&self) -> (usize, Client) {
        let index = self.preferred.load(Ordering::Relaxed) % self.clients.len();
        (index, self.clients[index].1.clone())
    }
}

/// Whether a call that failed with `err` may go on to another member.
fn moves_on(err: &etcd_client::Error, kind: Call) -> bool {
    match err {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            // gRPC's UNAVAILABLE, 14: the member is not there, or (etcd)
            // has no leader, or lost the call in an election. CANCELLED, 1,
            // and DEADLINE_EXCEEDED, 4: no answer in time (the client's own
            // timeout says CANCELLED).
            let code = status.code() as i32;
            match kind {
                Call::Read => code == 14,
                Call::Write => code == 14 && never_sent(err),
                Call::Guarded => matches!(code, 1 | 4 | 14),
            }
        }
        _ => false,
    }
}

/// Whether `err` says that the call never reached etcd's consensus: the
/// member could not be reached, or knew no leader to hand it to.
fn never_sent(err: &etcd_client::Error) -> bool {
    match err {
        // The channel could not be set up: nothing went out on it.
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            message.contains("tcp connect error")
                || message.contains("Connection refused")
                || message.contains("no leader")
        }
        _ => false,
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
        let members = run(&runtime, async move {
            Members::connect(&endpoints).await.map_err(etcd_error)
        })?;
        let mut store = Self {
            runtime: Some(runtime),
            members: Arc::new(members),
            config,
            generation: FIRST_GENERATION.to_string(),
            generation_guard: Compare::create_revision(Vec::new(), CompareOp::Equal, 0),
            leadership: Mutex::new(None),
            fence: Mutex::new(None),
            last_commit: Mutex::new(None),
            token_prefix: token_prefix(),
            commits: AtomicU64::new(0),
        };
        let (generation, guard) = store.current_guard()?;
        store.generation = generation;
        store.generation_guard = guard;
        Ok(store)
    }

    /// The generation `CURRENT` names now, and a compare that holds for as
    /// long as `CURRENT` is unchanged: on its value, or, when it is absent
    /// (the first generation), on its never having been created. (etcd
    /// fails every value compare on a missing key.)
    pub fn current_guard(&self) -> io::Result<(String, Compare)> {
        let key = self.current_key();
        Ok(match self.get(&key)? {
            Some(value) => {
                let generation = String::from_utf8(value.clone())
                    .map_err(|_| io::Error::other(format!("{key}: not UTF-8")))?;
                (generation, Compare::value(key, CompareOp::Equal, value))
            }
            None => (
                FIRST_GENERATION.to_string(),
                Compare::create_revision(key, CompareOp::Equal, 0),
            ),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// The key naming the current generation.
    pub fn current_key(&self) -> String {
        format!("{}/CURRENT", self.config.prefix)
    }

    /// The prefix of `kind`'s keys in `generation`.
    fn kind_prefix_in(&self, generation: &str, kind: &str) -> String {
        format!("{}/{generation}/{kind}/", self.config.prefix)
    }

    /// The prefix of every key of `generation`.
    pub fn generation_prefix(&self, generation: &str) -> String {
        format!("{}/{generation}/", self.config.prefix)
    }

    /// The key of `kind`'s object `name` in `generation`.
    pub fn key_in(&self, generation: &str, kind: &str, name: &str) -> String {
        format!("{}{name}", self.kind_prefix_in(generation, kind))
    }

    /// The generation this store opened on (what `CURRENT` named).
    pub fn generation(&self) -> &str {
        &self.generation
    }

    /// The cluster's key prefix.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The key of one object in the generation this store opened on.
    pub fn key(&self, kind: &str, name: &str) -> String {
        self.key_in(&self.generation, kind, name)
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

    /// The lease `key` is held under, if it exists (0: none).
    fn lease_of(&self, key: &str) -> io::Result<Option<i64>> {
        Ok(self.read_key(key)?.map(|(_, lease)| lease))
    }

    /// The value of one key, if it exists.
    pub fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.read_key(key)?.map(|(value, _)| value))
    }

    /// One key's value and the lease it is held under (0: none).
    fn read_key(&self, key: &str) -> io::Result<Option<(Vec<u8>, i64)>> {
        let (members, key) = (self.members.clone(), key.to_string());
        run(self.runtime(), async move {
            let response = members
                .call(Call::Read, |mut client| {
                    let key = key.clone();
                    async move { client.get(key, None).await }
                })
                .await?;
            Ok(response
                .kvs()
                .first()
                .map(|kv| (kv.value().to_vec(), kv.lease())))
        })
    }

    /// Every key under `prefix` with its value, in key order, read in pages
    /// of [`SCAN_PAGE`] (`keys_only`: values left empty).
    pub fn range(&self, prefix: &str, keys_only: bool) -> io::Result<Vec<(String, Vec<u8>)>> {
        let end = prefix_end(prefix.as_bytes());
        let mut found = Vec::new();
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let (members, start, end) = (self.members.clone(), from.clone(), end.clone());
            let (page, more) = run(self.runtime(), async move {
                let response = members
                    .call(Call::Read, |mut client| {
                        let mut options = GetOptions::new()
                            .with_range(end.clone())
                            .with_limit(SCAN_PAGE);
                        if keys_only {
                            options = options.with_keys_only();
                        }
                        let start = start.clone();
                        async move { client.get(start, Some(options)).await }
                    })
                    .await?;
                let page: Vec<(Vec<u8>, Vec<u8>)> = response
                    .kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                    .collect();
                Ok((page, response.more()))
            })?;
            if let Some((last, _)) = page.last() {
                // The next page starts just after the last key read.
                from = last.clone();
                from.push(0);
            }
            let empty = page.is_empty();
            found.extend(
                page.into_iter()
                    .map(|(key, value)| (String::from_utf8_lossy(&key).into_owned(), value)),
            );
            if !more || empty {
                return Ok(found);
            }
        }
    }

    /// Every object of a kind, and what each holds; an unreadable one is
    /// named by its key.
    pub fn scan<T: Object>(&self) -> io::Result<Vec<Scanned<T>>> {
        self.scan_in::<T>(&self.generation)
    }

    /// Every object of a kind in `generation`, as [`scan`](Self::scan).
    pub fn scan_in<T: Object>(&self, generation: &str) -> io::Result<Vec<Scanned<T>>> {
        let kvs = self.range(&self.kind_prefix_in(generation, T::KIND), false)?;
        Ok(kvs
            .into_iter()
            .map(|(key, value)| {
                let stored = match std::str::from_utf8(&value) {
                    Ok(text) => decode(text),
                    Err(err) => crate::store::Stored::Unreadable(format!("not UTF-8: {err}")),
                };
                Scanned {
                    path: PathBuf::from(key),
                    stored,
                }
            })
            .collect())
    }

    /// The generations that hold keys (complete or not), by name.
    pub fn generations(&self) -> io::Result<Vec<String>> {
        let root = format!("{}/", self.config.prefix);
        let mut names: Vec<String> = Vec::new();
        for (key, _) in self.range(&root, true)? {
            let rest = &key[root.len()..];
            // Only `<generation>/<kind>/<name>` keys name a generation.
            // Keys come in order: a generation's keys are together.
            if let Some((generation, tail)) = rest.split_once('/')
                && generation != "quarantine"
                && tail.contains('/')
                && names.last().map(String::as_str) != Some(generation)
            {
                names.push(generation.to_string());
            }
        }
        Ok(names)
    }

    /// Runs one transaction: `ops` if every compare holds. Returns whether
    /// they held (and so whether anything was written).
    pub fn transact(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> io::Result<bool> {
        self.transact_as(Call::Write, compares, ops)
    }

    fn transact_as(&self, kind: Call, compares: Vec<Compare>, ops: Vec<TxnOp>) -> io::Result<bool> {
        let members = self.members.clone();
        let txn = Txn::new().when(compares).and_then(ops);
        run(self.runtime(), async move {
            let response = members
                .call(kind, |mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await?;
            Ok(response.succeeded())
        })
    }

    /// Which SC holds the leadership on this prefix, if one does.
    pub fn leader(&self) -> io::Result<Option<String>> {
        Ok(self
            .get(&self.leader_key())?
            .map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    /// The key recording an upgrade.
    pub fn upgrade_key(&self) -> String {
        format!("{}/UPGRADE", self.config.prefix)
    }

    /// The key the elected SC holds under its lease.
    pub fn leader_key(&self) -> String {
        format!("{}/LEADER", self.config.prefix)
    }

    /// The key holding the token of the last change committed.
    pub fn committed_key(&self) -> String {
        format!("{}/COMMITTED", self.config.prefix)
    }

    /// Waits until this SC is elected (it holds the leader key under a
    /// lease of [`LEADER_TTL`]), then keeps the lease alive; from then on
    /// every commit is conditioned on holding it, so an SC that lost it
    /// (paused past its lease, cut off) writes nothing more. Returns a
    /// receiver that turns `true` when the lease is lost. `candidate` is
    /// what the key says about who leads.
    pub fn campaign(&self, candidate: &str) -> io::Result<watch::Receiver<bool>> {
        let (members, key, candidate) = (
            self.members.clone(),
            self.leader_key(),
            candidate.to_string(),
        );
        let ttl = LEADER_TTL.as_secs() as i64;
        let lease = run_unbounded(self.runtime(), async move {
            elect(&members, key, candidate, ttl).await
        })?;
        *self.leadership.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((self.leader_key(), lease));
        // The SC that led before wrote its own tokens.
        *self.last_commit.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let (lost_tx, lost) = watch::channel(false);
        let members = self.members.clone();
        let on_loss = lost_tx.clone();
        let keeping = self.runtime().spawn(async move {
            let reason = keep_alive(&members, lease, ttl).await;
            warn!(lease, %reason, "lost the leadership");
            let _ = on_loss.send(true);
        });
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fence {
            lease,
            keep_alive: keeping.abort_handle(),
            lost: lost_tx,
        });
        Ok(lost)
    }

    /// Gives the leadership up because a commit's outcome stays unknown:
    /// this SC's memory may no longer match etcd, so it stops leading and
    /// whoever leads next reads the metadata from etcd. The lease stops
    /// being renewed and is revoked if etcd can be reached; either way a
    /// commit still in flight inside etcd fails its lease compare once the
    /// lease is gone, before a standby is elected.
    fn give_up_leadership(&self) {
        let Some(fence) = self.fence.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        fence.keep_alive.abort();
        let (members, lease) = (self.members.clone(), fence.lease);
        self.runtime().spawn(async move {
            let revoked = members
                .call(Call::Write, |mut client| async move {
                    client.lease_revoke(lease).await
                })
                .await;
            if let Err(err) = revoked {
                warn!(lease, %err, "could not revoke the leader lease: it runs out on its own");
            }
        });
        warn!(
            lease = fence.lease,
            "a commit's outcome is unknown: giving up the leadership"
        );
        let _ = fence.lost.send(true);
    }

    /// What `COMMITTED` holds now, read from etcd unless this store knows.
    fn expected_commit(&self) -> io::Result<Option<Vec<u8>>> {
        if let Some(known) = self
            .last_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(known);
        }
        let read = self.get(&self.committed_key())?;
        *self.last_commit.lock().unwrap_or_else(|p| p.into_inner()) = Some(read.clone());
        Ok(read)
    }

    fn remember_commit(&self, value: Option<Option<Vec<u8>>>) {
        *self.last_commit.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// Gives the leadership up at once (a graceful stop): the lease is
    /// revoked, the leader key goes with it, and a standby takes over
    /// within its poll instead of the lease's TTL. Nothing is written
    /// under the leadership afterwards.
    pub fn resign(&self) -> io::Result<()> {
        // Commits from now on compare against a lease that is gone: they
        // fail, as a fenced leader's would.
        let held = self
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, lease)| *lease);
        let Some(lease) = held else {
            return Ok(());
        };
        let members = self.members.clone();
        run(self.runtime(), async move {
            members
                .call(Call::Write, |mut client| async move {
                    client.lease_revoke(lease).await
                })
                .await?;
            info!(lease, "resigned the leadership");
            Ok(())
        })
    }

    /// Applies `writes` in one transaction: all of them, or none, and at
    /// most once (see the module's docs). Returns `Ok` only once etcd
    /// holds them; an error says nothing was written, except one of kind
    /// `TimedOut`: no member could tell within [`COMMIT_TIMEOUT`], and
    /// this SC gives up its leadership (if it holds one) so that its
    /// memory, which lacks the change, is not served on.
    pub fn commit(&self, writes: Vec<crate::store::Write>) -> io::Result<()> {
        let mut ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|write| match write {
                crate::store::Write::Put { kind, name, bytes } => {
                    TxnOp::put(self.key(kind, &name), bytes, None)
                }
                crate::store::Write::Delete { kind, name } => {
                    TxnOp::delete(self.key(kind, &name), None)
                }
            })
            .collect();
        let writes = ops.len();
        let leadership = self
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let committed = self.committed_key();
        let token = format!(
            "{}-{}",
            self.token_prefix,
            self.commits.fetch_add(1, Ordering::Relaxed)
        )
        .into_bytes();
        let mut compares = vec![self.generation_guard.clone()];
        if let Some((key, lease)) = &leadership {
            compares.push(Compare::lease(key.clone(), CompareOp::Equal, *lease));
        }
        compares.push(match self.expected_commit()? {
            Some(previous) => Compare::value(committed.clone(), CompareOp::Equal, previous),
            None => Compare::create_revision(committed.clone(), CompareOp::Equal, 0),
        });
        ops.push(TxnOp::put(committed.clone(), token.clone(), None));
        let outcome = self.transact_as(Call::Guarded, compares, ops);
        // Until it is known again, `COMMITTED` is read before the next one.
        self.remember_commit(None);
        match outcome {
            Ok(true) => {
                self.remember_commit(Some(Some(token)));
                return Ok(());
            }
            Ok(false) => {}
            Err(err) if err.to_string().contains("too many operations") => {
                // A change is one transaction, whole or not at all.
                return Err(io::Error::other(format!(
                    "{err}: this change is {writes} writes in one transaction, more than \
                     etcd's --max-txn-ops allows (128 unless raised; a topic of N \
                     partitions is N + 2 writes, its token included): raise it on \
                     every etcd member"
                )));
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                self.give_up_leadership();
                return Err(err);
            }
            Err(err) => return Err(err),
        }
        // A compare failed: on the token because an earlier try of this
        // very commit was applied (its answer lost), or for a reason that
        // means nothing was written.
        let now = self.get(&committed)?;
        if now.as_deref() == Some(token.as_slice()) {
            info!("a commit whose answer was lost had been applied");
            self.remember_commit(Some(now));
            return Ok(());
        }
        let moved = self.current_guard()?.0 != self.generation;
        let leads = match &leadership {
            Some((key, lease)) => self.lease_of(key)? == Some(*lease),
            None => true,
        };
        self.remember_commit(Some(now));
        Err(io::Error::other(if moved {
            format!(
                "etcd: {} no longer names generation {} (an upgrade or migration switched it): nothing was written",
                self.current_key(),
                self.generation
            )
        } else if !leads {
            "etcd: this SC no longer holds the leadership (its lease is gone): nothing was written"
                .to_string()
        } else {
            format!(
                "etcd: another writer committed under {} since this SC last did: nothing was written",
                self.config.prefix
            )
        }))
    }
}

/// A prefix for commit tokens that no other store shares: this process and
/// the moment the store opened.
fn token_prefix() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), since_epoch.as_nanos())
}

/// The end of the key range of everything that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: every key from the prefix on.
    vec![0]
}

/// Holds the leader key under a new lease once it is free; returns the lease.
async fn elect(members: &Members, key: String, candidate: String, ttl: i64) -> io::Result<i64> {
    let mut announced = false;
    loop {
        let lease = members
            .call(Call::Write, |mut client| async move {
                client.lease_grant(ttl, None).await
            })
            .await?
            .id();
        let claim = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                candidate.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let claimed = members
            .call(Call::Write, |mut client| {
                let claim = claim.clone();
                async move { client.txn(claim).await }
            })
            .await?;
        if claimed.succeeded() {
            info!(%key, lease, "elected: this SC leads");
            return Ok(lease);
        }
        let _ = members
            .call(Call::Write, |mut client| async move {
                client.lease_revoke(lease).await
            })
            .await;
        // Someone leads: stand by until its key is gone (deleted, or its
        // lease expired).
        loop {
            let current = members
                .call(Call::Read, |mut client| {
                    let key = key.clone();
                    async move { client.get(key, None).await }
                })
                .await?;
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
/// why it stopped: etcd said the lease is gone, or etcd could not be heard
/// for two TTLs past the last renewal's expiry.
///
/// A failed renewal (a member of the etcd cluster gone, a stream cut, no
/// leader) is retried at the next member. It does not stop at the lease's
/// expiry as last renewed: etcd gives every lease a fresh TTL when a new
/// leader takes over, so the lease usually outlives an election, and giving
/// it up then would stop the only SC for nothing (it happened, on a loaded
/// machine, when the etcd member killed was etcd's leader). While unsure,
/// the SC writes nothing it should not: every commit is conditioned on
/// holding the lease, at etcd.
async fn keep_alive(members: &Members, lease: i64, ttl: i64) -> String {
    let ttl = Duration::from_secs(ttl as u64);
    let mut valid_until = tokio::time::Instant::now() + ttl;
    let mut stream = None;
    let (mut member, mut client) = members.preferred();
    let mut unsure = false;
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
                if std::mem::take(&mut unsure) {
                    info!(lease, "the leader lease is renewed again");
                }
                tokio::time::sleep(RENEW_EVERY).await;
            }
            Ok(Ok(Some(_))) => return "the lease expired".into(),
            // gRPC's NOT_FOUND, 5: etcd knows no such lease any more.
            Ok(Err(etcd_client::Error::GRpcStatus(status))) if status.code() as i32 == 5 => {
                return format!("the lease is gone: {}", status.message());
            }
            failed => {
                // Renewing is safe to repeat: on to the next member.
                stream = None;
                (member, client) = members.next(member);
                let why = match failed {
                    Ok(Err(err)) => err.to_string(),
                    Ok(Ok(None)) => "the keep-alive stream ended".into(),
                    _ => "no answer to a keep-alive".into(),
                };
                let now = tokio::time::Instant::now();
                if now >= valid_until + ttl * 2 {
                    return format!("etcd unheard of for two lease TTLs past its expiry: {why}");
                }
                if now >= valid_until && !std::mem::replace(&mut unsure, true) {
                    warn!(lease, %why, "the leader lease may have expired: trying to renew it still (its commits are refused if it did)");
                } else {
                    warn!(lease, %why, "renewing the leader lease again, at another member");
                }
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
