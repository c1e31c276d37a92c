//! A minimal HTTP/1.1 endpoint for Prometheus: `GET /metrics`, nothing else.

use std::sync::Arc;
use std::time::Duration;

use mg_guard::GuardStats;
use mg_transport::{ServerLimits, ShutdownSignal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::metrics::Metrics;

const MAX_REQUEST: usize = 8 * 1024;

pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    guard: GuardStats,
    shutdown: ShutdownSignal,
) {
    let limits = ServerLimits {
        max_connections: 64,
        drain_timeout: Duration::from_secs(1),
    };
    mg_transport::serve(listener, limits, shutdown, (), move |socket, peer, _| {
        let (metrics, guard) = (metrics.clone(), guard.clone());
        async move {
            let served =
                tokio::time::timeout(Duration::from_secs(5), answer(socket, &metrics, &guard))
                    .await;
            if !matches!(served, Ok(Ok(()))) {
                debug!(%peer, "metrics request failed or timed out");
            }
        }
    })
    .await;
}

async fn answer(
    mut socket: TcpStream,
    metrics: &Metrics,
    guard: &GuardStats,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || request.len() + n > MAX_REQUEST {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let (status, body) =
        if request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?") {
            ("200 OK", metrics.render(guard))
        } else {
            (
                "404 Not Found",
                "only /metrics is served here\n".to_string(),
            )
        };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
