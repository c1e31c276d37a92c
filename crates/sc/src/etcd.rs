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

use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp};

use crate::store::{Object, Scanned, decode};

/// How long one etcd call may take before it fails the change.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The generation used before any upgrade (as with files).
pub const FIRST_GENERATION: &str = "metadata";

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
        let mut client = self.client.clone();
        run(self.runtime(), async move {
            let response = client
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(etcd_error)?;
            if response.succeeded() {
                Ok(())
            } else {
                Err(io::Error::other("etcd: the transaction did not apply"))
            }
        })
    }
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
