//! The server bootstrap over real gRPC on loopback: health, reflection v1 and
//! v1alpha, the default deadline, graceful shutdown, and in-process pipes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use attune_kit::config::Limits;
use attune_kit::server::{GrpcServer, ServerError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A hand-written gRPC service (`attune.test.v1.Slow/Wait`, empty messages) whose
/// one method answers after `delay`: an in-flight call to drain.
#[derive(Clone)]
struct Slow {
    delay: Duration,
}

const SLOW: &str = "attune.test.v1.Slow";

impl NamedService for Slow {
    const NAME: &'static str = SLOW;
}

struct Wait(Duration);

impl UnaryService<()> for Wait {
    type Response = ();
    type Future = BoxFuture<Result<Response<()>, Status>>;

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        let delay = self.0;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Response::new(()))
        })
    }
}

impl tower::Service<http::Request<Body>> for Slow {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let delay = self.delay;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Wait(delay), request).await)
        })
    }
}

async fn call_slow(channel: Channel) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        Request::new(()),
        PathAndQuery::from_static("/attune.test.v1.Slow/Wait"),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("loopback URL is valid")
            .connect()
            .await
            .expect("server accepts connections")
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds before serving (no port race), like `attune serve`.
async fn start(server: GrpcServer) -> Running {
    attune_kit::telemetry::init_for_tests();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port binds");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        serving,
    }
}

fn slow_server(limits: Limits, delay: Duration) -> GrpcServer {
    let mut server = GrpcServer::new(limits);
    server.add_service(Slow { delay });
    server
}

async fn check(health: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, Status> {
    let response = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a status arrives in time");
    match next {
        Some(Ok(response)) => response.status(),
        other => panic!("watch stream ended: {other:?}"),
    }
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_mounted_service() {
    let mut running = start(slow_server(Limits::default(), Duration::ZERO)).await;
    let mut health = HealthClient::new(running.channel().await);

    assert_eq!(
        check(&mut health, "").await.expect("overall status"),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&mut health, SLOW)
            .await
            .expect("mounted service status"),
        ServingStatus::Serving
    );
    let unknown = check(&mut health, "attune.nothing.v1.Nothing")
        .await
        .expect_err("not mounted");
    assert_eq!(unknown.code(), Code::NotFound);

    running.shut_down();
    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
}

macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let mut client = ServerReflectionClient::new($channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("grpc.health.v1.Health".to_owned()),
        ]
        .map(|message| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        });
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection stream opens")
            .into_inner();

        let mut names = Vec::new();
        let mut health_described = false;
        while let Some(response) = responses.next().await {
            match response.expect("reflection answers").message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    names.extend(list.service.into_iter().map(|s| s.name));
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    health_described = !files.file_descriptor_proto.is_empty();
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        names.sort();
        (names, health_described)
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_mounted_services_health_and_reflection() {
    let mut running = start(slow_server(Limits::default(), Duration::ZERO)).await;
    let expected = [
        SLOW,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];

    let (v1, v1_health) = list_services!(v1, running.channel().await);
    assert_eq!(v1, expected);
    assert!(v1_health, "v1 describes grpc.health.v1.Health");

    let (v1alpha, v1alpha_health) = list_services!(v1alpha, running.channel().await);
    assert_eq!(v1alpha, expected);
    assert!(v1alpha_health, "v1alpha describes grpc.health.v1.Health");

    running.shut_down();
    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
}

#[tokio::test]
async fn calls_without_a_deadline_get_the_default_one() {
    let limits = Limits {
        request_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let mut running = start(slow_server(limits, Duration::from_secs(5))).await;

    let started = Instant::now();
    let err = call_slow(running.channel().await)
        .await
        .expect_err("the call outlives its deadline");
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    running.shut_down();
    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
}

#[tokio::test]
async fn shutdown_reports_not_serving_first_then_drains_in_flight_calls() {
    let limits = Limits {
        shutdown_grace: Duration::from_secs(5),
        ..Limits::default()
    };
    let mut running = start(slow_server(limits, Duration::from_millis(300))).await;
    let channel = running.channel().await;

    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SLOW.to_owned(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    let in_flight = tokio::spawn(call_slow(channel.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await; // let the call reach the server
    let started = Instant::now();
    running.shut_down();

    // Health flips while the connection is still served...
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    // ...and the watch is itself an in-flight call: end it, as a prober would.
    drop(watch);
    drop(health);

    // The call already running completes normally.
    in_flight
        .await
        .expect("call task joins")
        .expect("in-flight call is drained, not cut");
    drop(channel);

    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "drained in {:?}",
        started.elapsed()
    );

    // The listener is closed: new connections are refused.
    let reconnect = Endpoint::from_shared(format!("http://{}", running.addr))
        .expect("loopback URL is valid")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await;
    assert!(reconnect.is_err(), "listener still accepts after shutdown");
}

#[tokio::test]
async fn shutdown_cuts_calls_that_outlive_the_grace_period() {
    let limits = Limits {
        shutdown_grace: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut running = start(slow_server(limits, Duration::from_secs(60))).await;
    let channel = running.channel().await;

    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let endless = tokio::spawn(call_slow(channel.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    running.shut_down();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);

    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned before the grace: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "grace not enforced: {took:?}"
    );

    let cut = tokio::time::timeout(Duration::from_secs(5), endless)
        .await
        .expect("the cut call ends")
        .expect("call task joins");
    assert!(cut.is_err(), "a 60s call cannot have succeeded");
}

#[tokio::test]
async fn background_tasks_are_cancelled_after_the_drain_and_joined() {
    let server = GrpcServer::new(Limits::default());
    let stopped_cleanly = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped_cleanly);
    server.spawn_background("flagger", move |cancel| async move {
        cancel.cancelled().await;
        // Slow cleanup: serve() must wait for it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        flag.store(true, Ordering::SeqCst);
    });
    let draining = server.shutdown_token();
    assert!(!draining.is_cancelled());

    let mut running = start(server).await;
    // A real call first, so serving has started.
    let mut health = HealthClient::new(running.channel().await);
    assert_eq!(
        check(&mut health, "").await.expect("overall status"),
        ServingStatus::Serving
    );
    drop(health);
    assert!(!stopped_cleanly.load(Ordering::SeqCst));

    running.shut_down();
    running
        .serving
        .await
        .expect("serve task joins")
        .expect("serve ends cleanly");
    assert!(
        draining.is_cancelled(),
        "shutdown token fires when draining begins"
    );
    assert!(
        stopped_cleanly.load(Ordering::SeqCst),
        "serve returned before the task finished"
    );
}

#[tokio::test]
async fn a_local_server_answers_direct_calls_and_a_front_server_routes_to_it() {
    let local = slow_server(Limits::default(), Duration::ZERO)
        .start_local()
        .await
        .expect("the local server starts");
    let mut direct = HealthClient::new(local.service());
    let status = direct
        .check(HealthCheckRequest {
            service: SLOW.into(),
        })
        .await
        .expect("health answers a direct call")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    // A front server that mounts nothing of its own routes every other call.
    let mut front = GrpcServer::new(Limits::default());
    front.list_routed([SLOW]).route_elsewhere(local.service());
    let mut running = start(front).await;
    let channel = running.channel().await;
    call_slow(channel.clone())
        .await
        .expect("the call reaches the local server");
    // The front's own health is its own: the routed name has whatever status
    // the router sets (none yet), not the local server's.
    let mut health = HealthClient::new(channel);
    assert_eq!(
        check(&mut health, "").await.map_err(|status| status.code()),
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        check(&mut health, SLOW)
            .await
            .map_err(|status| status.code()),
        Err(Code::NotFound)
    );

    local.begin_shutdown().await;
    let status = direct
        .check(HealthCheckRequest {
            service: SLOW.into(),
        })
        .await
        .expect("health still answers while draining")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::NotServing);
    local.stop().await;
    running.shut_down();
    running
        .serving
        .await
        .expect("the server task does not panic")
        .expect("the front server stops cleanly");
}

#[tokio::test]
async fn an_in_process_pipe_reaches_its_server_until_the_server_stops() {
    let (channel, incoming) = attune_kit::in_process::pipe();
    let server = GrpcServer::new(Limits::default());
    server.serve_in_process(
        "test-in-process",
        incoming,
        Slow {
            delay: Duration::ZERO,
        },
    );
    let mut running = start(server).await;
    for _ in 0..2 {
        call_slow(channel.clone())
            .await
            .expect("the in-process server answers over the pipe");
    }

    running.shut_down();
    running
        .serving
        .await
        .expect("the server task does not panic")
        .expect("the server stops cleanly");
    let after = call_slow(channel)
        .await
        .expect_err("the in-process server stopped with the server");
    assert_eq!(after.code(), Code::Unavailable, "{after:?}");
}
