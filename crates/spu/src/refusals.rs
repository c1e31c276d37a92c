//! Who is refused: every produce entry the guard refuses is counted per
//! topic, code and client id (`/metrics`), and logged at info level, rate
//! limited: the first refusal per (topic, client id, peer address) in each
//! interval, with the number of those suppressed since, naming the topic,
//! partition, code, client id and peer, so an operator can find the
//! misconfigured producer. (Fluvio logs these below info.)
//!
//! Client ids are chosen by clients: the number of client ids counted per
//! topic and of (topic, client id, peer) windows kept is bounded; beyond
//! those, refusals count under the client id `other`, and new producers
//! are counted but not logged until windows expire.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

/// How often a (topic, client id, peer) gets a log line, at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Client ids counted per topic; more count as `other`.
const MAX_CLIENTS_PER_TOPIC: usize = 100;
/// Log windows kept; expired ones are dropped when it is reached.
const MAX_WINDOWS: usize = 10_000;

/// topic -> code -> client id -> refusals.
type Counts = BTreeMap<String, BTreeMap<i16, BTreeMap<String, u64>>>;

/// One (topic, client id, peer)'s log window.
#[derive(Debug)]
struct Window {
    started: Instant,
    suppressed: u64,
}

/// The log windows: peer -> topic -> client id. Nested so that a refusal
/// inside an open window (the common case under a misconfigured producer)
/// looks its window up by borrowed names, allocating nothing.
#[derive(Debug, Default)]
struct Windows {
    by_peer: HashMap<SocketAddr, HashMap<String, HashMap<String, Window>>>,
    len: usize,
}

impl Windows {
    fn get_mut(&mut self, peer: SocketAddr, topic: &str, client_id: &str) -> Option<&mut Window> {
        self.by_peer
            .get_mut(&peer)?
            .get_mut(topic)?
            .get_mut(client_id)
    }

    fn insert(&mut self, peer: SocketAddr, topic: &str, client_id: &str, window: Window) {
        let topics = self.by_peer.entry(peer).or_default();
        let clients = match topics.get_mut(topic) {
            Some(clients) => clients,
            None => topics.entry(topic.to_string()).or_default(),
        };
        if clients.insert(client_id.to_string(), window).is_none() {
            self.len += 1;
        }
    }

    /// Drops the windows `keep` refuses, and the maps left empty.
    fn retain(&mut self, keep: impl Fn(&Window) -> bool) {
        let mut len = 0;
        self.by_peer.retain(|_, topics| {
            topics.retain(|_, clients| {
                clients.retain(|_, window| keep(window));
                len += clients.len();
                !clients.is_empty()
            });
            !topics.is_empty()
        });
        self.len = len;
    }
}

/// The refusals an SPU has seen.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<Counts>,
    windows: Mutex<Windows>,
}

impl Refusals {
    /// Records one refused entry.
    pub fn refused(
        &self,
        topic: &str,
        partition: u32,
        code: i16,
        client_id: &str,
        peer: SocketAddr,
    ) {
        self.refused_at(topic, partition, code, client_id, peer, Instant::now());
    }

    /// [`refused`](Self::refused) at `now`; returns the suppressed count it
    /// logged with, or `None` if it was not logged (its window is open).
    fn refused_at(
        &self,
        topic: &str,
        partition: u32,
        code: i16,
        client_id: &str,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<u64> {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let codes = match counts.get_mut(topic) {
                Some(codes) => codes,
                None => counts.entry(topic.to_string()).or_default(),
            };
            let clients = codes.entry(code).or_default();
            let client = if clients.contains_key(client_id) || clients.len() < MAX_CLIENTS_PER_TOPIC
            {
                client_id
            } else {
                "other"
            };
            match clients.get_mut(client) {
                Some(n) => *n += 1,
                None => {
                    clients.insert(client.to_string(), 1);
                }
            }
        }
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let suppressed = match windows.get_mut(peer, topic, client_id) {
            Some(window) if now.duration_since(window.started) < LOG_INTERVAL => {
                window.suppressed += 1;
                return None;
            }
            Some(window) => {
                let suppressed = window.suppressed;
                *window = Window {
                    started: now,
                    suppressed: 0,
                };
                suppressed
            }
            None => {
                if windows.len >= MAX_WINDOWS {
                    windows.retain(|w| now.duration_since(w.started) < LOG_INTERVAL);
                }
                if windows.len >= MAX_WINDOWS {
                    // Too many producers refused at once: counted, not
                    // logged, rather than a line each.
                    return None;
                }
                let window = Window {
                    started: now,
                    suppressed: 0,
                };
                windows.insert(peer, topic, client_id, window);
                0
            }
        };
        drop(windows);
        info!(
            topic,
            partition,
            code,
            meaning = meaning(code),
            client_id,
            %peer,
            suppressed,
            "refused produce"
        );
        Some(suppressed)
    }

    /// Refusals of `code` to `topic` from `client_id` so far.
    pub fn count(&self, topic: &str, code: i16, client_id: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(topic)
            .and_then(|codes| codes.get(&code))
            .and_then(|clients| clients.get(client_id))
            .copied()
            .unwrap_or(0)
    }

    /// Every count, for the exposition: (topic, code, client id, n).
    pub(crate) fn all(&self) -> Vec<(String, i16, String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = Vec::new();
        for (topic, codes) in counts.iter() {
            for (code, clients) in codes {
                for (client, n) in clients {
                    all.push((topic.clone(), *code, client.clone(), *n));
                }
            }
        }
        all
    }
}

/// What a refusal code means, for the log line.
fn meaning(code: i16) -> &'static str {
    match code {
        11003 => "MirrorProduceFromHome: a mirror partition written at home",
        11006 => "MirrorProduceFromRemoteNotAllowed: a home-to-remote target written at the remote",
        6 => "NotLeaderForPartition",
        _ => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_suppressed() {
        let refusals = Refusals::default();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(
            refusals.refused_at("m", 0, 11003, "app", peer, at(0)),
            Some(0)
        );
        assert_eq!(refusals.refused_at("m", 0, 11003, "app", peer, at(1)), None);
        assert_eq!(refusals.refused_at("m", 1, 11003, "app", peer, at(2)), None);
        // Another peer is another producer: its own line.
        assert_eq!(
            refusals.refused_at("m", 0, 11003, "app", other, at(2)),
            Some(0)
        );
        assert_eq!(
            refusals.refused_at("m", 0, 11003, "app", peer, at(11)),
            Some(2)
        );
        assert_eq!(refusals.count("m", 11003, "app"), 5);
    }

    #[test]
    fn windows_are_bounded_and_expired_ones_make_room() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        let peer = |n: usize| SocketAddr::from(([127, 0, 0, 1], 1000 + (n % 50_000) as u16));
        for n in 0..MAX_WINDOWS {
            assert_eq!(
                refusals.refused_at("m", 0, 11003, &format!("c{n}"), peer(n), t0),
                Some(0)
            );
        }
        // Full: a new producer is counted, not logged, while all are open.
        let extra = refusals.refused_at("m", 0, 11003, "late", peer(1), t0);
        assert_eq!(extra, None);
        // Once they expired, the next one is logged in a window of its own.
        let later = t0 + LOG_INTERVAL;
        assert_eq!(
            refusals.refused_at("m", 0, 11003, "late", peer(1), later),
            Some(0)
        );
        assert_eq!(refusals.windows.lock().unwrap().len, 1);
    }

    #[test]
    fn client_ids_past_the_bound_count_as_other() {
        let refusals = Refusals::default();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for n in 0..MAX_CLIENTS_PER_TOPIC + 5 {
            refusals.refused("m", 0, 11003, &format!("client-{n}"), peer);
        }
        assert_eq!(refusals.count("m", 11003, "other"), 5);
        assert_eq!(refusals.all().len(), MAX_CLIENTS_PER_TOPIC + 1);
    }
}
