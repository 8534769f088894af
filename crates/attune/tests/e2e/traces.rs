//! One trace across every process: each service and the gateway run as their
//! own `attune serve --service NAME`, export spans to an OTLP/gRPC receiver
//! served by the test, and one `GetPageExperience` call sent with a known
//! `traceparent` must come back as one trace: the gateway's span under the
//! caller's, every service the page reads below it, and database statements
//! below those. JSON log lines written while serving a call carry its trace id,
//! with and without an exporter.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use crate::support::{EveryServiceApart, Process, attune, postgres_database, sqlite_url};
use attune_proto::common::v1 as common_pb;
use attune_proto::consent::v1 as consent_pb;
use attune_proto::gateway::v1 as gateway_pb;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::tonic;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;

/// The services a page reads: each must show up in the page's trace.
const PAGE_SERVICES: [&str; 5] = [
    "consent",
    "profile",
    "recommendation",
    "loyalty",
    "delivery",
];

/// The trace and span of the caller of the page (a storefront, say).
const PAGE_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const PAGE_CALLER_SPAN: &str = "eee19b7ec3c1b174";
/// The trace the consent grant is sent in.
const GRANT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const GRANT_CALLER_SPAN: &str = "b7ad6b7169203331";

/// The traces of the data-subject requests fanned out to every service.
const EXPORT_TRACE: &str = "2c7a3b61f5e94a0c8d1e6f4b3a290d17";
const ERASE_TRACE: &str = "9e4d2f1a7b3c4e5d8f6a0b1c2d3e4f5a";
const SUBJECT_CALLER_SPAN: &str = "a1b2c3d4e5f60718";

const CUSTOMER: &str = "cust-traced";

/// An OTLP/gRPC trace receiver that hands every export to the test.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves a receiver on a free loopback port; returns its URL and the exports.
async fn receiver() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, exports) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(sender)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), exports)
}

/// One exported span, flattened with its process's `service.name`.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn string_values(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(value) => Some((kv.key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn flatten(exports: &[ExportTraceServiceRequest]) -> Vec<Exported> {
    let mut spans = Vec::new();
    for resource_spans in exports.iter().flat_map(|e| &e.resource_spans) {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| string_values(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            spans.push(Exported {
                service: service.clone(),
                name: span.name.clone(),
                kind: span.kind,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: string_values(&span.attributes),
            });
        }
    }
    spans
}

/// The spans of one trace, by span id.
struct Trace(HashMap<String, Exported>);

impl Trace {
    fn of(spans: &[Exported], trace_id: &str) -> Self {
        Self(
            spans
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .map(|span| (span.span_id.clone(), span.clone()))
                .collect(),
        )
    }

    /// Whether `span` is `ancestor` or below it.
    fn descends_from(&self, span: &Exported, ancestor: &str) -> bool {
        let mut current = Some(span);
        // A chain longer than the trace would be a cycle.
        for _ in 0..=self.0.len() {
            match current {
                Some(span) if span.span_id == ancestor => return true,
                Some(span) => current = self.0.get(&span.parent_span_id),
                None => return false,
            }
        }
        false
    }

    fn spans(&self) -> impl Iterator<Item = &Exported> {
        self.0.values()
    }

    /// The server span `process` opened for `rpc` (`package.Service/Method`).
    fn server_span(&self, process: &str, rpc: &str) -> &Exported {
        self.spans()
            .find(|span| {
                span.service == process && span.name == rpc && span.kind == SpanKind::Server as i32
            })
            .unwrap_or_else(|| panic!("no {process} span for {rpc} in {:?}", self.summary()))
    }

    /// How many server spans `process` opened for calls whose name starts
    /// with `prefix`, below `ancestor`.
    fn served_below(&self, process: &str, prefix: &str, ancestor: &str) -> usize {
        self.spans()
            .filter(|span| {
                span.service == process
                    && span.kind == SpanKind::Server as i32
                    && span.name.starts_with(prefix)
                    && self.descends_from(span, ancestor)
            })
            .count()
    }

    /// Names `service: span` of every span, for failure messages.
    fn summary(&self) -> BTreeSet<String> {
        self.spans()
            .map(|span| format!("{}: {}", span.service, span.name))
            .collect()
    }
}

fn traced<T>(message: T, trace_id: &str, span_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").parse().unwrap(),
    );
    request
}

fn grant() -> consent_pb::RecordConsentRequest {
    consent_pb::RecordConsentRequest {
        customer_id: CUSTOMER.into(),
        decisions: vec![consent_pb::PurposeDecision {
            purpose_code: "personalization".into(),
            decision: consent_pb::Decision::Granted.into(),
            notice_version: 1,
        }],
        channel: common_pb::Channel::Web.into(),
        request_id: "traced-grant".into(),
        ..Default::default()
    }
}

fn event(kind: profile_pb::EventKind, event_id: &str, item_id: &str) -> profile_pb::Event {
    profile_pb::Event {
        event_id: event_id.into(),
        customer_id: CUSTOMER.into(),
        kind: kind.into(),
        occur_time: Some(SystemTime::now().into()),
        channel: common_pb::Channel::Web.into(),
        items: vec![profile_pb::EventItem {
            item_id: item_id.into(),
            quantity: 1,
            unit_price: Some(common_pb::Money {
                amount_minor: 2500,
                currency_code: "EUR".into(),
            }),
            category_path: vec!["shoes".into()],
            brand: "acme".into(),
        }],
        ..Default::default()
    }
}

fn events() -> Vec<profile_pb::Event> {
    use profile_pb::EventKind;
    vec![
        event(EventKind::View, "traced-view-1", "sku-1"),
        event(EventKind::View, "traced-view-2", "sku-2"),
        profile_pb::Event {
            order_id: "traced-order".into(),
            amount: Some(common_pb::Money {
                amount_minor: 2500,
                currency_code: "EUR".into(),
            }),
            ..event(EventKind::Purchase, "traced-purchase", "sku-1")
        },
    ]
}

/// A cart page asking for every part a page can show online.
fn cart_page() -> gateway_pb::GetPageExperienceRequest {
    gateway_pb::GetPageExperienceRequest {
        customer_id: CUSTOMER.into(),
        page_type: gateway_pb::PageType::Cart.into(),
        placements: vec![gateway_pb::PlacementRequest {
            slot_id: "below-cart".into(),
            placement: gateway_pb::SlotPlacement::Cart.into(),
            max_items: 5,
            filter: None,
        }],
        context: Some(gateway_pb::PageContext {
            channel: common_pb::Channel::Web.into(),
            cart_lines: vec![gateway_pb::CartLine {
                item_id: "sku-1".into(),
                quantity: 1,
                unit_weight_grams: 500,
            }],
            cart_total: Some(common_pb::Money {
                amount_minor: 2500,
                currency_code: "EUR".into(),
            }),
            location: Some(gateway_pb::DeliveryLocation {
                value: Some(gateway_pb::delivery_location::Value::Position(
                    gateway_pb::GeoPosition {
                        point: Some(common_pb::GeoPoint {
                            latitude_microdegrees: 52_520_000,
                            longitude_microdegrees: 13_405_000,
                        }),
                        country_code: "DE".into(),
                    },
                )),
            }),
            language_code: "en".into(),
            ..Default::default()
        }),
        parts: vec![
            gateway_pb::PagePart::Profile.into(),
            gateway_pb::PagePart::Recommendations.into(),
            gateway_pb::PagePart::Loyalty.into(),
            gateway_pb::PagePart::Delivery.into(),
        ],
        part_budget: Some(attune_proto::prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        store: None,
    }
}

/// The log line of `process` that contains `message`, once it has been read
/// from the process (a line may trail the answer it was written for).
fn log_line(process: &Process, message: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = process.log();
        if let Some(line) = log.iter().find(|line| line.contains(message)) {
            return line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line says {message:?}:\n{}",
            log.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn one_trace_across_every_process(database_url: &str, db_system: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (endpoint, mut exports) = runtime.block_on(receiver());

    // Each process's `service.name` is left to its role's default.
    let apart = EveryServiceApart::start(
        database_url,
        &[("ATTUNE_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())],
    );
    let gateway_url = apart.gateway.url();
    let page = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(gateway_url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        consent_pb::consent_service_client::ConsentServiceClient::new(channel.clone())
            .record_consent(traced(grant(), GRANT_TRACE, GRANT_CALLER_SPAN))
            .await
            .unwrap();
        let ingested = profile_pb::event_service_client::EventServiceClient::new(channel.clone())
            .ingest_events(profile_pb::IngestEventsRequest {
                events: events(),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ingested.results.len(), 3, "{ingested:?}");
        let page = gateway_pb::gateway_service_client::GatewayServiceClient::new(channel.clone())
            .get_page_experience(traced(cart_page(), PAGE_TRACE, PAGE_CALLER_SPAN))
            .await
            .unwrap()
            .into_inner();
        let mut requests =
            gateway_pb::data_subject_request_service_client::DataSubjectRequestServiceClient::new(
                channel,
            );
        let mut export = requests
            .export_customer(traced(
                gateway_pb::ExportCustomerRequest {
                    customer_id: CUSTOMER.into(),
                    request_id: "traced-export".into(),
                    ..Default::default()
                },
                EXPORT_TRACE,
                SUBJECT_CALLER_SPAN,
            ))
            .await
            .unwrap()
            .into_inner();
        while export.message().await.unwrap().is_some() {}
        let erased = requests
            .erase_customer(traced(
                gateway_pb::EraseCustomerRequest {
                    customer_id: CUSTOMER.into(),
                    request_id: "traced-erase".into(),
                },
                ERASE_TRACE,
                SUBJECT_CALLER_SPAN,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(erased.complete, "{erased:?}");
        page
    });
    assert_eq!(page.customer_id, CUSTOMER);

    // With an exporter, the consent pod's log line about the grant joins the
    // grant's trace, under a span of its own.
    let consent_pod = &apart.pods[0].1;
    let recorded = log_line(consent_pod, "consent recorded");
    assert!(
        recorded.contains(&format!("\"trace_id\":\"{GRANT_TRACE}\"")),
        "{recorded}"
    );
    assert!(!recorded.contains(GRANT_CALLER_SPAN), "{recorded}");
    assert!(
        !recorded.contains(CUSTOMER),
        "no customer id in logs: {recorded}"
    );

    // SIGTERM flushes each process's pending spans before it exits.
    apart.terminate();
    let mut received = Vec::new();
    while let Ok(export) = exports.try_recv() {
        received.push(export);
    }
    let spans = flatten(&received);
    let trace = Trace::of(&spans, PAGE_TRACE);

    let page_span = trace
        .spans()
        .find(|span| {
            span.service == "attune-gateway"
                && span.name == "attune.gateway.v1.GatewayService/GetPageExperience"
        })
        .unwrap_or_else(|| panic!("no gateway page span in {:?}", trace.summary()));
    assert_eq!(page_span.kind, SpanKind::Server as i32);
    assert_eq!(
        page_span.parent_span_id, PAGE_CALLER_SPAN,
        "the gateway's span is the caller's child"
    );

    for service in PAGE_SERVICES {
        let process = format!("attune-{service}");
        let package = format!("attune.{service}.v1.");
        let served = trace
            .spans()
            .filter(|span| {
                span.service == process
                    && span.kind == SpanKind::Server as i32
                    && span.name.starts_with(&package)
                    && trace.descends_from(span, &page_span.span_id)
            })
            .count();
        assert!(
            served > 0,
            "{service} serves the page within its trace: {:?}",
            trace.summary()
        );
    }

    // Statements run for the page are spans of the service that ran them,
    // below one of its RPC spans, named by kind and table only.
    let statements: Vec<_> = trace
        .spans()
        .filter(|span| span.name == "db.query")
        .collect();
    let mut services_querying = BTreeSet::new();
    for statement in &statements {
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert_eq!(
            statement
                .attributes
                .get("db.system.name")
                .map(String::as_str),
            Some(db_system)
        );
        let operation = statement.attributes.get("db.operation.name");
        assert!(
            operation.is_some_and(|op| op.chars().all(|c| c.is_ascii_uppercase())),
            "{statement:?}"
        );
        assert!(
            !statement.attributes.values().any(|v| v.contains(CUSTOMER)),
            "{statement:?}"
        );
        let rpc = trace
            .0
            .get(&statement.parent_span_id)
            .expect("a statement's parent is exported in the same trace");
        assert_eq!(
            rpc.service, statement.service,
            "{statement:?} under {rpc:?}"
        );
        assert_eq!(rpc.kind, SpanKind::Server as i32, "{rpc:?}");
        assert!(trace.descends_from(rpc, &page_span.span_id));
        services_querying.insert(statement.service.clone());
    }
    for service in [
        "attune-consent",
        "attune-profile",
        "attune-loyalty",
        "attune-delivery",
    ] {
        assert!(
            services_querying.contains(service),
            "{service} ran statements for the page: {services_querying:?}"
        );
    }

    // A routed call: the gateway's span under the caller's, the service's
    // under the gateway's.
    let grant = Trace::of(&spans, GRANT_TRACE);
    let rpc = "attune.consent.v1.ConsentService/RecordConsent";
    let routed = grant.server_span("attune-gateway", rpc);
    assert_eq!(routed.parent_span_id, GRANT_CALLER_SPAN);
    assert_eq!(
        grant.server_span("attune-consent", rpc).parent_span_id,
        routed.span_id
    );

    // Data-subject requests: every service's part below the gateway's span.
    for (trace_id, rpc) in [
        (EXPORT_TRACE, "ExportCustomer"),
        (ERASE_TRACE, "EraseCustomer"),
    ] {
        let subject = Trace::of(&spans, trace_id);
        let request = subject.server_span(
            "attune-gateway",
            &format!("attune.gateway.v1.DataSubjectRequestService/{rpc}"),
        );
        assert_eq!(request.parent_span_id, SUBJECT_CALLER_SPAN);
        for service in PAGE_SERVICES {
            assert!(
                subject.served_below(
                    &format!("attune-{service}"),
                    &format!("attune.privacy.v1.DataSubjectService/{rpc}"),
                    &request.span_id,
                ) > 0,
                "{service}'s part of {rpc} is in its trace: {:?}",
                subject.summary()
            );
        }
    }

    // Background work (the feed poller every 100 ms) is no trace's child and
    // sends no statement spans of its own.
    assert!(
        spans
            .iter()
            .filter(|span| span.name == "db.query")
            .all(|span| !span.parent_span_id.is_empty()),
        "every statement span has a request above it"
    );
}

#[test]
fn one_page_is_one_trace_across_every_process_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    one_trace_across_every_process(&url, "sqlite");
}

#[test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
fn one_page_is_one_trace_across_every_process_on_postgres() {
    let database = postgres_database("traces");
    one_trace_across_every_process(&database.config.url, "postgresql");
    drop(database);
}

/// In one process the backends run inside the gateway's span: a page is one
/// server span, with every statement any service ran for it below it.
#[test]
fn in_one_process_a_page_is_one_span_with_its_statements_below() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (endpoint, mut exports) = runtime.block_on(receiver());
    let server = Process::start(
        attune()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--database-url", &url])
            .env("ATTUNE_TELEMETRY__OTLP_ENDPOINT", &endpoint),
    );
    let address = server.url();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(address)
            .unwrap()
            .connect()
            .await
            .unwrap();
        consent_pb::consent_service_client::ConsentServiceClient::new(channel.clone())
            .record_consent(grant())
            .await
            .unwrap();
        gateway_pb::gateway_service_client::GatewayServiceClient::new(channel)
            .get_page_experience(traced(cart_page(), PAGE_TRACE, PAGE_CALLER_SPAN))
            .await
            .unwrap();
    });
    server.terminate();
    let mut received = Vec::new();
    while let Ok(export) = exports.try_recv() {
        received.push(export);
    }
    let trace = Trace::of(&flatten(&received), PAGE_TRACE);
    let page = trace.server_span(
        "attune",
        "attune.gateway.v1.GatewayService/GetPageExperience",
    );
    assert_eq!(page.parent_span_id, PAGE_CALLER_SPAN);
    let servers: Vec<_> = trace
        .spans()
        .filter(|span| span.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "backends add no span: {:?}",
        trace.summary()
    );
    let statements: Vec<_> = trace
        .spans()
        .filter(|span| span.name == "db.query")
        .collect();
    assert!(!statements.is_empty(), "{:?}", trace.summary());
    assert!(
        statements
            .iter()
            .all(|statement| statement.parent_span_id == page.span_id
                && statement
                    .attributes
                    .get("db.system.name")
                    .map(String::as_str)
                    == Some("sqlite")),
        "{statements:?}"
    );
}

/// Without a collector no span is recorded, yet a log line written while
/// serving a call names the trace its caller sent, and the caller's span.
#[test]
fn without_an_exporter_log_lines_carry_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let server = Process::start(
        attune()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--database-url", &url]),
    );
    let address = server.url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        consent_pb::consent_service_client::ConsentServiceClient::connect(address)
            .await
            .unwrap()
            .record_consent(traced(grant(), GRANT_TRACE, GRANT_CALLER_SPAN))
            .await
            .unwrap();
    });
    let recorded = log_line(&server, "consent recorded");
    assert!(
        recorded.starts_with(&format!(
            "{{\"trace_id\":\"{GRANT_TRACE}\",\"span_id\":\"{GRANT_CALLER_SPAN}\","
        )),
        "{recorded}"
    );
    assert!(!recorded.contains(CUSTOMER), "{recorded}");
    // Lines outside any call carry no trace.
    let serving = log_line(&server, "attune is serving");
    assert!(!serving.contains("trace_id"), "{serving}");
    server.terminate();
}
