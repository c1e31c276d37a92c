//! The one place that connects out, and the backoff between attempts.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::shutdown::ShutdownSignal;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr` (within [`CONNECT_TIMEOUT`]) with Nagle off, as every
/// peer here exchanges small frames.
pub async fn dial(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects to `endpoint` (`host:port`, a name or an address): each address
/// it resolves to is tried in turn, since a peer may listen on one family
/// only (Fluvio's SPUs advertise `localhost` and bind IPv4). A
/// comma-separated list (the SCs of a highly available cluster, of which
/// only the active one listens) is tried in order too.
pub async fn dial_endpoint(endpoint: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{endpoint} resolves to no address"),
    );
    for one in endpoint.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let addrs = match tokio::net::lookup_host(one).await {
            Ok(addrs) => addrs,
            Err(err) => {
                last = err;
                continue;
            }
        };
        for addr in addrs {
            match dial(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = err,
            }
        }
    }
    Err(last)
}

/// Exponential backoff: `min`, doubling up to `max`, back to `min` on
/// [`reset`](Backoff::reset).
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay to wait now; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Waits the next delay; `false` if shutdown came first.
    pub async fn wait(&mut self, shutdown: &mut ShutdownSignal) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.wait() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        let seen: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [50, 100, 200, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 50);
    }

    #[tokio::test]
    async fn dial_endpoint_tries_every_address_of_a_name() {
        // `localhost` may resolve to ::1 first; the listener is IPv4 only.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = dial_endpoint(&format!("localhost:{port}")).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        assert!(dial_endpoint("127.0.0.1:1").await.is_err());
    }

    #[tokio::test]
    async fn dial_refused_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(dial(addr).await.is_err());
    }
}
