//! gRPC between the services of one process, without a socket.
//!
//! In `attune serve` every service runs in one process, yet a service reaches
//! another (the consent checker reaching consent) through a tonic [`Channel`],
//! exactly as it does across pods. Here the channel's connections are in-memory
//! pipes (`tokio::io::duplex`) handed to a server that reads them from a queue:
//! each reconnect makes a fresh pipe, so the channel survives the server closing
//! a connection. (tonic's `examples/src/mock/mock.rs` hands out one pipe, which a
//! long-lived channel outgrows.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Bytes buffered in each direction of one in-memory connection.
const PIPE_BUFFER: usize = 256 * 1024;

/// The server ends of an in-process channel's connections, in the order opened.
pub type Incoming = UnboundedReceiverStream<io::Result<DuplexStream>>;

/// Makes a lazy channel and the stream of server ends of its connections: serve
/// the stream with [`GrpcServer::serve_in_process`](crate::GrpcServer::serve_in_process)
/// and the channel reaches that server. Nothing connects before the first call,
/// so the channel can be handed to a service before its server exists.
pub fn pipe() -> (Channel, Incoming) {
    let (sender, receiver) = mpsc::unbounded_channel();
    // The address is never dialled; the connector below makes every connection.
    let channel = Endpoint::from_static("http://in-process.attune.invalid")
        .connect_with_connector_lazy(Connector { sender });
    (channel, UnboundedReceiverStream::new(receiver))
}

/// Opens a connection by creating a pipe and queueing its server end.
#[derive(Debug, Clone)]
struct Connector {
    sender: mpsc::UnboundedSender<io::Result<DuplexStream>>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        let queued = self.sender.send(Ok(server)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the in-process server has stopped",
            )
        });
        Box::pin(async move { queued.map(|()| TokioIo::new(client)) })
    }
}
