//! `/metrics` over HTTP/1.1 (hyper), on this crate's accept loop: one
//! response per connection, then it closes; anything but `GET /metrics`
//! is a 404. The SPU and the SC serve their counters through it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::{ServerLimits, ShutdownSignal};

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the exposition, at each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on `listener` with what `render` returns, until
/// shutdown.
pub async fn serve(listener: TcpListener, render: Render, shutdown: ShutdownSignal) {
    let limits = ServerLimits {
        max_connections: 64,
        drain_timeout: Duration::from_secs(1),
    };
    crate::serve(listener, limits, shutdown, (), move |socket, peer, _| {
        let render = render.clone();
        async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&request, &render);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(socket), service);
            let served = tokio::time::timeout(Duration::from_secs(5), connection).await;
            if !matches!(served, Ok(Ok(()))) {
                debug!(%peer, "metrics request failed or timed out");
            }
        }
    })
    .await;
}

fn answer(request: &Request<Incoming>, render: &Render) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            (StatusCode::OK, CONTENT_TYPE, render())
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain",
                "only /metrics is served here\n".to_string(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
