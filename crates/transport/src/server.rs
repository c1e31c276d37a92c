//! The one accept loop: every server in this workspace accepts through it.
//!
//! ```text
//! accept -> (at the limit? refuse, logged) -> spawn the connection, tracked
//! shutdown -> stop accepting -> connections see the signal and finish the
//!             request in hand -> drained, or aborted after the drain timeout
//! ```
//!
//! Connection tasks live in a `JoinSet` that is reaped as they end, so a
//! long-running server holds nothing for connections long gone.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::shutdown::{Shutdown, ShutdownSignal};

/// How many connections a server holds, and how long it drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; one more is accepted and closed at once,
    /// with a warning, so its client gets an answer instead of a hang.
    pub max_connections: usize,
    /// How long connections get to finish after shutdown before they are
    /// aborted.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// What a server reports about its accept loop.
pub trait AcceptObserver: Send + 'static {
    /// A connection was refused at the limit.
    fn refused(&self) {}
}

impl AcceptObserver for () {}

impl<T: AcceptObserver + Sync> AcceptObserver for std::sync::Arc<T> {
    fn refused(&self) {
        (**self).refused();
    }
}

/// A server started by [`start`]: where it listens, and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets the connections finish what they hold (see
    /// [`serve`]), and returns once every one has ended.
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

/// Binds `listen` and runs [`serve`] on it as a task of its own, in a span
/// named after the server.
pub async fn start<F, Fut>(
    name: &'static str,
    listen: SocketAddr,
    limits: ServerLimits,
    observer: impl AcceptObserver,
    on_connection: F,
) -> std::io::Result<RunningServer>
where
    F: FnMut(TcpStream, SocketAddr, ShutdownSignal) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, signal) = Shutdown::new();
    let serving = serve(listener, limits, signal, observer, on_connection);
    let task = tokio::spawn(serving.instrument(info_span!("server", name, %addr)));
    info!(name, %addr, "listening");
    Ok(RunningServer {
        addr,
        shutdown,
        task,
    })
}

/// Accepts on `listener` until `shutdown` fires, running `on_connection`
/// for each connection as a task of its own; then drains.
///
/// Each connection gets its own clone of the signal and should stop between
/// requests once it fires. Returns once every connection has ended.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: ServerLimits,
    mut shutdown: ShutdownSignal,
    observer: impl AcceptObserver,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr, ShutdownSignal) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Reap ended connections before counting them against the limit.
            biased;
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = ended && err.is_panic() {
                    warn!(%err, "a connection task panicked");
                }
            }
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    if connections.len() >= limits.max_connections {
                        warn!(%peer, limit = limits.max_connections, "connection limit reached: refusing");
                        observer.refused();
                        drop(socket);
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let connection = on_connection(socket, peer, shutdown.clone());
                    connections.spawn(connection.instrument(info_span!("connection", %peer)));
                }
                // Out of file descriptors and the like: keep serving the
                // connections there are, and try again shortly.
                Err(err) => {
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!(open, "draining connections");
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = connections.len(),
            timeout = ?limits.drain_timeout,
            "connections did not finish in time: aborting them"
        );
        connections.shutdown().await;
    } else {
        debug!("every connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Count(Arc<AtomicUsize>);
    impl AcceptObserver for Count {
        fn refused(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Echoes one byte per read until shutdown, finishing the byte in hand.
    async fn echo(mut socket: TcpStream, _peer: SocketAddr, mut stop: ShutdownSignal) {
        let mut byte = [0u8; 1];
        loop {
            tokio::select! {
                read = socket.read(&mut byte) => match read {
                    Ok(1) => { let _ = socket.write_all(&byte).await; }
                    _ => return,
                },
                () = stop.wait() => return,
            }
        }
    }

    #[tokio::test]
    async fn limit_refuses_the_extra_connection_and_shutdown_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = Shutdown::new();
        let refused = Arc::new(AtomicUsize::new(0));
        let limits = ServerLimits {
            max_connections: 1,
            drain_timeout: Duration::from_secs(5),
        };
        let server = tokio::spawn(serve(
            listener,
            limits,
            signal,
            Count(refused.clone()),
            echo,
        ));

        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"a").await.unwrap();
        let mut byte = [0u8; 1];
        first.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"a");

        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        // Closed by the server without a byte.
        assert_eq!(second.read_to_end(&mut rest).await.unwrap_or(0), 0);
        assert_eq!(refused.load(Ordering::SeqCst), 1);

        shutdown.trigger();
        server.await.unwrap();
        // The first connection was ended by the drain.
        assert_eq!(first.read(&mut byte).await.unwrap_or(0), 0);
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ignores_shutdown_is_aborted_after_the_drain_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = Shutdown::new();
        let limits = ServerLimits {
            max_connections: 8,
            drain_timeout: Duration::from_secs(5),
        };
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let mut started_tx = Some(started_tx);
        let server = tokio::spawn(serve(listener, limits, signal, (), move |socket, _, _| {
            let started = started_tx.take();
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                let _socket = socket;
                std::future::pending::<()>().await
            }
        }));
        let _client = TcpStream::connect(addr).await.unwrap();
        started.await.unwrap();
        shutdown.trigger();
        server.await.unwrap();
    }
}
