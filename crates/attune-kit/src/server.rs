//! The one gRPC server bootstrap every Attune process uses.
//!
//! Always on: `grpc.health.v1` (overall `""` and each mounted service, plus
//! [`LIVENESS`], which answers SERVING for as long as the process serves at
//! all), server
//! reflection v1 and v1alpha (so every grpcurl works), limits from [`Limits`], the
//! [`TraceContextLayer`], and per-call metrics ([`RpcMetricsLayer`]; a server that
//! routes elsewhere is the `gateway`, any other a `backend`). Shutdown is an argument: when it resolves, health goes
//! NOT_SERVING first, the listener closes, in-flight calls drain for at most
//! `limits.shutdown_grace` (then their connections are cut), and background tasks
//! are cancelled and joined.
//!
//! A server can also run without a port: [`GrpcServer::start_local`] makes it a
//! tower service ([`LocalServer`]) that the gateway calls directly in one
//! process. And a server can pass every call for a service it does not mount to
//! one fallback ([`GrpcServer::route_elsewhere`]): how the gateway's router sits
//! behind the public port's health, reflection and own services.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};
use tower::Layer as _;
use tower::layer::util::{Identity, Stack};
use tracing::Instrument as _;

use crate::config::Limits;
use crate::db::health::{self, Availability, Gated, ProbeSettings};
use crate::in_process::Incoming;
use crate::metrics::rpc::{RpcMetricsLayer, ServerRole};
use crate::telemetry::{InProcessTraceLayer, TraceContextLayer};

/// Sets a generated tonic server's message size limits from [`Limits`]; tonic
/// configures these per service, not per server.
///
/// ```ignore
/// server.add_service(attune_kit::with_limits!(ConsentServiceServer::new(api), config.limits));
/// ```
#[macro_export]
macro_rules! with_limits {
    ($server:expr, $limits:expr) => {
        $server
            .max_decoding_message_size($limits.max_message_bytes)
            .max_encoding_message_size($limits.max_message_bytes)
    };
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Serving failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A registered descriptor set is malformed.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The health name a liveness probe asks (`grpc.service: liveness` in
/// Kubernetes): SERVING from start to exit, whatever the database or the
/// shutdown's drain. The overall `""` goes NOT_SERVING while the database is
/// unreachable and from the start of a shutdown, which is right for readiness
/// (send no traffic here) but would make a liveness probe restart pods that
/// only wait for their database, and then cannot start until it is back.
pub const LIVENESS: &str = "liveness";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// A generated tonic server (with its limits applied), as a server mounts it.
pub trait GrpcService:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A gRPC server being assembled: mount services, spawn background tasks, then
/// [`serve`](GrpcServer::serve).
pub struct GrpcServer {
    limits: Limits,
    /// The mounted services by gRPC service name, each behind its database gate.
    mounted: Vec<(&'static str, HttpService)>,
    service_names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    health: HealthReporter,
    draining: CancellationToken,
    background_cancel: CancellationToken,
    background: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    routed_names: Vec<&'static str>,
    fallback: Option<HttpService>,
    front: Option<Front>,
    database: Availability,
}

/// What a server puts in front of every call it answers (see [`GrpcServer::front_every_call`]).
type Front = Box<dyn FnOnce(HttpService) -> HttpService + Send>;

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("limits", &self.limits)
            .field("service_names", &self.service_names)
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// An empty server with health and reflection, bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            mounted: Vec::new(),
            service_names: Vec::new(),
            descriptor_sets: vec![
                attune_proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                // google.rpc error details, so grpcurl can show field violations.
                tonic_types::pb::FILE_DESCRIPTOR_SET,
            ],
            health: HealthReporter::new(),
            draining: CancellationToken::new(),
            background_cancel: CancellationToken::new(),
            background: Mutex::new(Vec::new()),
            routed_names: Vec::new(),
            fallback: None,
            front: None,
            database: Availability::default(),
        }
    }

    /// Mounts a generated tonic server; marks it SERVING in grpc.health.v1 and lists it in reflection.
    ///
    /// Its status is set when [`serve`](Self::serve) starts, since nobody can ask before.
    /// A service name can be mounted once per server (a second one panics, as
    /// tonic's router did); health and reflection are mounted already.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: GrpcService,
    {
        // Refused at once while a database watch says the database is down.
        assert!(
            !self.service_names.contains(&S::NAME),
            "{} is mounted twice",
            S::NAME
        );
        self.mounted.push((
            S::NAME,
            HttpService::new(Gated::new(service, self.database.clone())),
        ));
        self.service_names.push(S::NAME);
        self
    }

    /// Watches `db` in the background (see [`crate::db::health`]): while it is
    /// unreachable, every service mounted here answers UNAVAILABLE at once and
    /// health reports NOT_SERVING for them and overall; both recover by themselves.
    /// Call it after mounting the services it covers. Ends when shutdown begins, so
    /// it never reports SERVING again during the drain.
    pub fn watch_database(&self, db: sea_orm::DatabaseConnection, settings: ProbeSettings) {
        let (availability, reporter) = (self.database.clone(), self.health.clone());
        let services = self.service_names.clone();
        let draining = self.shutdown_token();
        self.spawn_background("database health", move |cancel| async move {
            tokio::select! {
                () = health::watch(db, availability, reporter, services, settings, draining) => {}
                () = cancel.cancelled() => {}
            }
        });
    }

    /// Adds an encoded `FileDescriptorSet` to reflection, for services whose
    /// descriptors are not in `attune_proto::FILE_DESCRIPTOR_SET`.
    pub fn add_descriptor_set(&mut self, encoded: &'static [u8]) -> &mut Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// A handle on this server's health statuses, e.g. to report a dependency down.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Cancelled when shutdown begins (after health goes NOT_SERVING): long-lived
    /// streams (watches, feeds) end on it, so the drain need not wait out the grace.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.draining.child_token()
    }

    /// Background tasks: cancelled (child CancellationToken) and joined at shutdown.
    ///
    /// The task starts now, on the current Tokio runtime (call this inside one). It
    /// is cancelled after in-flight calls have drained, since those may rely on it.
    pub fn spawn_background<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let future = task(self.background_cancel.child_token());
        let handle =
            tokio::spawn(future.instrument(tracing::info_span!("background", task = name)));
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, handle));
    }

    /// Serves `service` to this process only, on the connections of an
    /// [`in_process::pipe`](crate::in_process::pipe), with the same limits and
    /// trace propagation as the public port: how one service of `attune serve`
    /// calls another through the same gRPC code as across pods. The in-process
    /// server is a background task, stopped after the drain.
    pub fn serve_in_process<S>(&self, name: &'static str, incoming: Incoming, service: S)
    where
        S: GrpcService,
    {
        let limits = self.limits.clone();
        let metrics = RpcMetricsLayer::new(ServerRole::Backend, &self.descriptor_sets);
        self.spawn_background(name, move |cancel| async move {
            let served = configured_server(&limits, metrics)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "in-process gRPC server failed");
            }
        });
    }

    /// Serves names that another service answers through [`route_elsewhere`](Self::route_elsewhere)
    /// (the gateway's backends): they are listed in reflection and go NOT_SERVING at
    /// shutdown, but their health is set by whoever routes them, not marked
    /// SERVING when serving starts.
    pub fn list_routed(&mut self, names: impl IntoIterator<Item = &'static str>) -> &mut Self {
        self.routed_names.extend(names);
        self
    }

    /// Sends every call whose gRPC service is not mounted here (nor health or
    /// reflection) to `service`, as it arrives: the gateway's router. Without
    /// it such calls are UNIMPLEMENTED.
    pub fn route_elsewhere(&mut self, service: HttpService) -> &mut Self {
        self.fallback = Some(service);
        self
    }

    /// Puts `front` in front of every call this server answers (its mounted
    /// services, health, reflection and the fallback alike): the gateway's policy
    /// on the public port, which must see each call before any service does.
    pub fn front_every_call(
        &mut self,
        front: impl FnOnce(HttpService) -> HttpService + Send + 'static,
    ) -> &mut Self {
        self.front = Some(Box::new(front));
        self
    }

    /// Serves until `shutdown` resolves: then every health status goes NOT_SERVING first, the listener stops accepting, in-flight calls drain for at most `limits.shutdown_grace`, background tasks are cancelled and joined.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let assembled = self.assemble().await?;
        let result = serve_assembled(&assembled, listener, shutdown).await;
        assembled.stop_background().await;
        result
    }

    /// Starts this server without a listener, to be called directly as a tower
    /// service by another server of the same process (the gateway): no socket, no
    /// HTTP/2 hop, messages never re-encoded. Its services are SERVING now; the
    /// caller stops it with [`LocalServer::begin_shutdown`] and [`LocalServer::stop`].
    pub async fn start_local(self) -> Result<LocalServer, ServerError> {
        Ok(LocalServer {
            inner: self.assemble().await?,
        })
    }

    /// Adds health and reflection, marks the mounted services SERVING, and makes
    /// the one tower service that answers every call.
    async fn assemble(self) -> Result<Assembled, ServerError> {
        let Self {
            limits,
            mut mounted,
            service_names,
            routed_names,
            descriptor_sets,
            health,
            draining,
            background_cancel,
            background,
            fallback,
            front,
            database: _,
        } = self;
        let listed: Vec<&'static str> =
            service_names.iter().chain(&routed_names).copied().collect();
        let (reflection_v1, reflection_v1alpha) = reflection(&listed, &descriptor_sets)?;
        let metrics = RpcMetricsLayer::new(
            if fallback.is_some() {
                ServerRole::Gateway
            } else {
                ServerRole::Backend
            },
            &[
                &descriptor_sets[..],
                &[
                    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                ],
            ]
            .concat(),
        );
        mounted.extend([
            (
                HEALTH_SERVICE,
                HttpService::new(tonic_health::pb::health_server::HealthServer::new(
                    HealthService::from_health_reporter(health.clone()),
                )),
            ),
            (REFLECTION_V1, HttpService::new(reflection_v1)),
            (REFLECTION_V1ALPHA, HttpService::new(reflection_v1alpha)),
        ]);
        for name in ["", LIVENESS]
            .into_iter()
            .chain(service_names.iter().copied())
        {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let dispatch = HttpService::new(Dispatch {
            mounted: mounted.into(),
            fallback,
        });
        let dispatch = match front {
            Some(front) => front(dispatch),
            None => dispatch,
        };
        let mut statuses = vec![""];
        statuses.extend(listed);
        Ok(Assembled {
            limits,
            metrics,
            dispatch,
            statuses,
            health,
            draining,
            background_cancel,
            background: background
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        })
    }
}

/// A tower service answering gRPC calls as they arrive over HTTP/2, with the
/// body passed through: what the gateway forwards to.
pub type HttpService =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A server with its routes, health and reflection assembled, before it serves.
struct Assembled {
    limits: Limits,
    metrics: RpcMetricsLayer,
    dispatch: HttpService,
    statuses: Vec<&'static str>,
    health: HealthReporter,
    draining: CancellationToken,
    background_cancel: CancellationToken,
    background: Vec<(&'static str, JoinHandle<()>)>,
}

impl Assembled {
    /// Health NOT_SERVING for everything listed, then long-lived streams end.
    async fn begin_shutdown(&self) {
        for name in &self.statuses {
            self.health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        self.draining.cancel();
    }

    /// Cancels the background tasks and joins them (each within the grace).
    async fn stop_background(self) {
        self.background_cancel.cancel();
        join_background(self.background, self.limits.shutdown_grace).await;
    }
}

/// A service's backend server running in this process without a listener (see
/// [`GrpcServer::start_local`]).
pub struct LocalServer {
    inner: Assembled,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("statuses", &self.inner.statuses)
            .finish_non_exhaustive()
    }
}

impl LocalServer {
    /// The server as a tower service: every call runs in the caller's span (the
    /// gateway's `grpc.request`, in the same task), or, called outside any span,
    /// in its own `grpc.request` span, child of the `traceparent` the caller sent.
    pub fn service(&self) -> HttpService {
        let recorded = self.inner.metrics.layer(self.inner.dispatch.clone());
        HttpService::new(tower::ServiceExt::map_response(
            InProcessTraceLayer.layer(recorded),
            |response: http::Response<_>| response.map(Body::new),
        ))
    }

    /// Reports NOT_SERVING for every service and ends long-lived streams, as a
    /// server on a port does when shutdown begins; calls still work during the drain.
    pub async fn begin_shutdown(&self) {
        self.inner.begin_shutdown().await;
    }

    /// Cancels and joins the background tasks: call it after the callers drained.
    pub async fn stop(self) {
        self.inner.stop_background().await;
    }
}

/// The one service behind a server: its mounted services by name, and for every
/// other gRPC service the fallback (the gateway's router), if any.
///
/// A lookup by the path's service name rather than tonic's `Routes`: that axum
/// router matched every call's path a second time after the gateway's router
/// had, through more boxed services and futures, for the same answer.
#[derive(Clone)]
struct Dispatch {
    mounted: std::sync::Arc<[(&'static str, HttpService)]>,
    fallback: Option<HttpService>,
}

impl Dispatch {
    /// The service mounted here that answers `path` (`/<service>/<method>`), if any.
    fn mounted(&self, path: &str) -> Option<&HttpService> {
        let (service, _method) = path.strip_prefix('/')?.split_once('/')?;
        self.mounted
            .iter()
            .find_map(|(name, mounted)| (*name == service).then_some(mounted))
    }
}

impl tower::Service<http::Request<Body>> for Dispatch {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<HttpService, http::Request<Body>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every call goes through `oneshot` on its target, which awaits readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let target = match self.mounted(request.uri().path()) {
            Some(mounted) => mounted.clone(),
            None => self.fallback.clone().unwrap_or_else(unimplemented_service),
        };
        tower::ServiceExt::oneshot(target, request)
    }
}

/// Answers every call UNIMPLEMENTED, as any gRPC server does for a service it
/// does not serve.
fn unimplemented_service() -> HttpService {
    HttpService::new(tower::service_fn(|_: http::Request<Body>| {
        std::future::ready(Ok::<_, Infallible>(
            tonic::Status::unimplemented("").into_http(),
        ))
    }))
}

/// Serves `assembled` on `listener` until `shutdown`, then drains (see [`GrpcServer::serve`]).
async fn serve_assembled(
    assembled: &Assembled,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let limits = &assembled.limits;
    // Cancelled when the grace period is over: every accepted connection then
    // fails its I/O, so hyper drops it and the drain ends.
    let cut_connections = CancellationToken::new();
    let incoming = {
        let cut = cut_connections.clone();
        TcpListenerStream::new(listener).map(move |accepted| {
            accepted.map(|stream| {
                // Small unary messages must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                CuttableStream::new(stream, &cut)
            })
        })
    };
    let (stop_accepting, stop_accepting_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = configured_server(limits, assembled.metrics.clone())
        .serve_with_incoming_shutdown(assembled.dispatch.clone(), incoming, async move {
            let _ = stop_accepting_rx.await;
        });
    let mut serving = pin!(serving);

    tokio::select! {
        result = &mut serving => {
            // Stopped on its own, before any shutdown request: an error.
            return result.map_err(ServerError::from);
        }
        () = shutdown => {}
    }

    tracing::info!("shutdown requested: reporting NOT_SERVING, then draining");
    assembled.begin_shutdown().await;
    let _ = stop_accepting.send(());

    match tokio::time::timeout(limits.shutdown_grace, &mut serving).await {
        Ok(result) => result?,
        Err(_elapsed) => {
            tracing::warn!(
                grace = ?limits.shutdown_grace,
                "in-flight calls outlived the shutdown grace; cutting their connections"
            );
            cut_connections.cancel();
            // Cut connections close at once; the bound only guards against the unforeseen.
            if tokio::time::timeout(Duration::from_secs(1), &mut serving)
                .await
                .is_err()
            {
                tracing::warn!("connections still open after being cut; abandoning them");
            }
        }
    }
    tracing::info!("gRPC server stopped");
    Ok(())
}

/// A tonic server with the limits, metrics and trace propagation every Attune
/// server has, on the public port and in process alike.
fn configured_server(
    limits: &Limits,
    metrics: RpcMetricsLayer,
) -> Server<Stack<TraceContextLayer, Stack<RpcMetricsLayer, Identity>>> {
    Server::builder()
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .timeout(limits.request_timeout)
        // Outermost: a call's time includes its span's.
        .layer(metrics)
        .layer(TraceContextLayer)
}

/// Reflection v1 and v1alpha, listing only what is mounted, health and reflection.
#[allow(clippy::type_complexity)]
fn reflection(
    service_names: &[&'static str],
    descriptor_sets: &[&'static [u8]],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServerError,
> {
    let builder = || {
        // Both reflection descriptor sets in both builders, so each version can
        // describe every service it lists.
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for set in descriptor_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        for name in service_names
            .iter()
            .chain(&[HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA])
        {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

async fn join_background(tasks: Vec<(&'static str, JoinHandle<()>)>, bound: Duration) {
    for (name, mut handle) in tasks {
        match tokio::time::timeout(bound, &mut handle).await {
            Ok(Ok(())) => tracing::debug!(task = name, "background task stopped"),
            Ok(Err(err)) if err.is_panic() => {
                tracing::error!(task = name, "background task panicked")
            }
            Ok(Err(_cancelled)) => {}
            Err(_elapsed) => {
                tracing::warn!(
                    task = name,
                    "background task ignored cancellation; aborting it"
                );
                handle.abort();
            }
        }
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C (SIGINT).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a server polls it only once it serves, and a SIGTERM that
/// arrived while it was still starting would otherwise meet the default
/// disposition and kill the process mid-start instead of stopping it cleanly.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        tokio::select! {
            () = received(terminate, "SIGTERM") => tracing::info!("SIGTERM received"),
            () = received(interrupt, "Ctrl-C") => tracing::info!("Ctrl-C received"),
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}

/// Waits for one signal; never resolves if its handler could not be installed.
#[cfg(unix)]
async fn received(handler: io::Result<tokio::signal::unix::Signal>, name: &str) {
    match handler {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(err) => {
            tracing::error!(error = %err, signal = name, "cannot listen for the signal");
            std::future::pending::<()>().await;
        }
    }
}

/// A TCP connection that fails all I/O once `cut` is cancelled, so that hyper
/// drops it even in the middle of a call that would never end (a watch stream).
struct CuttableStream {
    stream: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    is_cut: bool,
}

impl CuttableStream {
    fn new(stream: TcpStream, cut: &CancellationToken) -> Self {
        Self {
            stream,
            cut: Box::pin(cut.clone().cancelled_owned()),
            is_cut: false,
        }
    }

    /// Registers the task to be woken when the connection is cut.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.is_cut && self.cut.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
        }
        if self.is_cut {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "shutdown grace period elapsed",
            ))
        } else {
            Ok(())
        }
    }
}

impl Connected for CuttableStream {
    type ConnectInfo = TcpConnectInfo;

    /// Keeps `Request::remote_addr()` working.
    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(err) = self.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(err) = self.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = self.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing must work even when cut.
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(err) = self.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch_over(names: &[&'static str]) -> Dispatch {
        Dispatch {
            mounted: names
                .iter()
                .map(|name| (*name, unimplemented_service()))
                .collect::<Vec<_>>()
                .into(),
            fallback: None,
        }
    }

    #[test]
    fn a_call_finds_the_service_its_path_names() {
        let dispatch = dispatch_over(&[HEALTH_SERVICE, "attune.consent.v1.ConsentService"]);
        assert!(
            dispatch
                .mounted("/attune.consent.v1.ConsentService/CheckConsent")
                .is_some()
        );
        assert!(dispatch.mounted("/grpc.health.v1.Health/Check").is_some());
    }

    #[test]
    fn a_path_naming_no_mounted_service_finds_none() {
        let dispatch = dispatch_over(&["attune.consent.v1.ConsentService"]);
        for path in [
            "",
            "/",
            "/attune.consent.v1.ConsentService",
            "attune.consent.v1.ConsentService/CheckConsent",
            "/attune.consent.v1.ConsentServiceX/CheckConsent",
            "/attune.consent.v1/ConsentService/CheckConsent",
        ] {
            assert!(dispatch.mounted(path).is_none(), "{path}");
        }
    }
}
