//! `GET /metrics` on a port of its own, in plain HTTP/1: what Prometheus scrapes.
//!
//! Separate from the gRPC port so that a scrape needs neither the gateway's
//! credentials nor HTTP/2, and so that a NetworkPolicy can open it to the
//! monitoring namespace alone. Anything but `GET /metrics` is 404 (405 for
//! another method on `/metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codegen::Bytes;

use super::Exposition;
use super::encode::CONTENT_TYPE;

/// The path Prometheus scrapes.
pub const PATH: &str = "/metrics";

/// How long a connection may take to send its request headers: a client that
/// opens connections and sends nothing must not hold them forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open scrapes may take to finish once the endpoint stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A running metrics endpoint; [`stop`](Self::stop) it with the server it reports on.
#[derive(Debug)]
pub struct MetricsEndpoint {
    address: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Listens on `address` (port 0: any free port) and serves `exposition`
    /// there until stopped. Logs the bound address once, as
    /// `"metrics endpoint is serving"` with the field `address`.
    pub async fn start(address: SocketAddr, exposition: Exposition) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(listener, exposition, stop.clone()));
        tracing::info!(%address, "metrics endpoint is serving");
        Ok(Self {
            address,
            stop,
            task,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, lets open scrapes finish within a second, and returns.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await
            && error.is_panic()
        {
            tracing::error!("the metrics endpoint panicked");
        }
    }
}

async fn accept(listener: TcpListener, exposition: Exposition, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, exposition.clone(), stop.clone()));
                }
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(%error, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    let _ = tokio::time::timeout(STOP_GRACE, connections.wait()).await;
}

async fn serve_connection(stream: TcpStream, exposition: Exposition, stop: CancellationToken) {
    let service = hyper::service::service_fn(move |request| {
        let response = respond(&exposition, &request);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    tokio::select! {
        _served = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, connection).await;
        }
    }
}

fn respond<B>(exposition: &Exposition, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if request.uri().path() != PATH {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".into(),
        )
    } else if request.method() != http::Method::GET {
        (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        )
    } else {
        match exposition.scrape() {
            Ok(text) => (http::StatusCode::OK, CONTENT_TYPE, text),
            Err(error) => {
                tracing::warn!(%error, "cannot collect metrics");
                (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "metrics are shut down\n".into(),
                )
            }
        }
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// The raw HTTP/1 answer to `request_line` (e.g. `GET /metrics`).
    async fn ask(address: SocketAddr, request_line: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("endpoint listens");
        stream
            .write_all(
                format!("{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("request sent");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .expect("answer read");
        answer
    }

    #[tokio::test]
    async fn serves_the_exposition_at_metrics_and_nothing_elsewhere() {
        let exposition = Exposition::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(exposition.reader())
            .build();
        provider
            .meter("test")
            .u64_counter("attune.endpoint.test")
            .build()
            .add(5, &[]);
        let endpoint = MetricsEndpoint::start(([127, 0, 0, 1], 0).into(), exposition)
            .await
            .expect("loopback binds");
        let address = endpoint.address();

        let scraped = ask(address, "GET /metrics").await;
        assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
        assert!(scraped.contains(CONTENT_TYPE), "{scraped}");
        assert!(
            scraped.contains(
                "\r\n\r\n# TYPE attune_endpoint_test_total counter\nattune_endpoint_test_total 5\n"
            ),
            "{scraped}"
        );
        assert!(ask(address, "GET /").await.starts_with("HTTP/1.1 404"));
        assert!(
            ask(address, "GET /metrics/x")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            ask(address, "POST /metrics")
                .await
                .starts_with("HTTP/1.1 405")
        );

        provider.shutdown().expect("provider shuts down");
        assert!(
            ask(address, "GET /metrics")
                .await
                .starts_with("HTTP/1.1 503")
        );

        endpoint.stop().await;
        assert!(
            TcpStream::connect(address).await.is_err(),
            "stopped means closed"
        );
    }
}
