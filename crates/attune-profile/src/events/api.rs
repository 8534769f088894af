//! The gRPC face of events: each RPC parses its request, calls ingestion, the
//! listing, the feed or the traits, and converts the answer.

use std::pin::Pin;
use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::error::Violations;
use attune_kit::pagination::{decode_cursor, encode_page_token, page_size};
use attune_kit::types::{CustomerId, RequestId, time};
use attune_proto::profile::v1 as pb;
use attune_proto::profile::v1::event_service_server::EventService;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::ingest::{BatchOutcome, ingest};
use super::list::{EventQuery, list};
use super::stream::{FeedQuery, FeedStream, stream_events};
use super::traits::load_states;
use super::{MAX_BATCH, traits::TraitState};
use crate::Profile;

/// `attune.profile.v1.EventService` over the profile service's state.
#[derive(Debug, Clone)]
pub struct EventApi {
    profile: Profile,
    /// Queues this process's ingestion batches for the write lock.
    turn: Arc<Mutex<()>>,
}

impl EventApi {
    /// The API over `profile`.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            turn: Arc::new(Mutex::new(())),
        }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// 1 to [`MAX_BATCH`] events.
fn batch_size(events: &[pb::Event]) -> Result<(), ApiError> {
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, not {}", events.len()),
        ));
    }
    Ok(())
}

/// A valid event kind, for filters.
fn event_kinds(v: &mut Violations, field: &str, kinds: &[i32]) -> Vec<i32> {
    for (i, kind) in kinds.iter().enumerate() {
        if !pb::EventKind::try_from(*kind).is_ok_and(|k| k != pb::EventKind::Unspecified) {
            v.add(format!("{field}[{i}]"), "must be a known event kind");
        }
    }
    kinds.to_vec()
}

fn customer_id(v: &mut Violations, raw: &str) -> Option<String> {
    v.check("customer_id", CustomerId::parse(raw))
        .map(|_| raw.to_owned())
}

/// The resolved customer, or NOT_FOUND.
async fn known_customer(profile: &Profile, customer_id: &str) -> Result<String, ApiError> {
    crate::people::resolve_customer_id(&profile.db, customer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no profile has this customer id".into()))
}

impl From<BatchOutcome> for pb::IngestEventsResponse {
    fn from(outcome: BatchOutcome) -> Self {
        let (accepted_count, duplicate_count, skipped_count, rejected_count) = outcome.totals();
        Self {
            status_counts: outcome.status_counts(),
            results: outcome.results,
            accepted_count,
            duplicate_count,
            skipped_count,
            rejected_count,
        }
    }
}

fn stream_response(batch_index: i64, outcome: BatchOutcome) -> pb::IngestEventStreamResponse {
    let (accepted_count, duplicate_count, skipped_count, rejected_count) = outcome.totals();
    pb::IngestEventStreamResponse {
        batch_index,
        accepted_count,
        duplicate_count,
        skipped_count,
        rejected_count,
        status_counts: outcome.status_counts(),
        last_sequence: outcome.last_sequence(),
        results: outcome
            .results
            .into_iter()
            .filter(|result| result.status != pb::IngestStatus::Accepted as i32)
            .collect(),
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> RpcResult<pb::IngestEventsResponse> {
        let pb::IngestEventsRequest { events, request_id } = request.into_inner();
        batch_size(&events)?;
        if !request_id.is_empty() {
            RequestId::parse(&request_id).map_err(|p| ApiError::invalid("request_id", p))?;
        }
        let outcome = ingest(&self.profile, &self.turn, events).await?;
        Ok(Response::new(outcome.into()))
    }

    type IngestEventStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::IngestEventStreamResponse, Status>> + Send>>;

    async fn ingest_event_stream(
        &self,
        request: Request<Streaming<pb::IngestEventStreamRequest>>,
    ) -> RpcResult<Self::IngestEventStreamStream> {
        let mut requests = request.into_inner();
        let profile = self.profile.clone();
        let turn = Arc::clone(&self.turn);
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut batch_index = 0_i64;
            while let Some(message) = requests.next().await {
                let answer = match message {
                    Err(status) => Err(status),
                    Ok(pb::IngestEventStreamRequest { events }) => match batch_size(&events) {
                        Err(error) => Err(error.into()),
                        Ok(()) => ingest(&profile, &turn, events)
                            .await
                            .map(|outcome| stream_response(batch_index, outcome))
                            .map_err(Status::from),
                    },
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
                batch_index += 1;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> RpcResult<pb::ListEventsResponse> {
        let pb::ListEventsRequest {
            customer_id: raw_customer,
            kinds,
            start_time,
            end_time,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = customer_id(&mut v, &raw_customer);
        let kinds = event_kinds(&mut v, "kinds", &kinds);
        let start = v.check("start_time", time::from_proto_optional(start_time));
        let end = v.check("end_time", time::from_proto_optional(end_time));
        if let (Some(Some(start)), Some(Some(end))) = (start, end)
            && start >= end
        {
            v.add("end_time", "must be after start_time");
        }
        let size = v.check_field(page_size("page_size", raw_size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, |cursor| {
            let (occur, sequence) = cursor.split_once(':')?;
            Some((occur.parse().ok()?, sequence.parse().ok()?))
        });
        v.finish()?;
        let (Some(customer), Some(size)) = (customer, size) else {
            return Err(ApiError::internal("validated fields are present").into());
        };
        let customer = known_customer(&self.profile, &customer).await?;
        let query = EventQuery {
            customer_id: customer,
            kinds,
            start: start.flatten(),
            end: end.flatten(),
            page_size: size,
            after,
        };
        let (events, next) = list(&self.profile.db, &query).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token: next
                .map(|(occur, sequence)| encode_page_token(&format!("{occur}:{sequence}")))
                .unwrap_or_default(),
        }))
    }

    type StreamEventsStream = FeedStream;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> RpcResult<Self::StreamEventsStream> {
        let pb::StreamEventsRequest {
            after_sequence,
            event_kinds: kinds,
            max_batch_size,
            stop_at_head,
        } = request.into_inner();
        let mut v = Violations::default();
        if after_sequence < 0 {
            v.add(
                "after_sequence",
                "must be 0 or a sequence from an earlier response",
            );
        }
        let event_kinds = event_kinds(&mut v, "event_kinds", &kinds);
        let size = v.check_field(page_size("max_batch_size", max_batch_size, 100, 1000));
        v.finish()?;
        let query = FeedQuery {
            after_sequence,
            event_kinds,
            max_batch_size: size.map_or(100, |size| size as usize),
            stop_at_head,
        };
        Ok(Response::new(stream_events(&self.profile, query).await?))
    }

    async fn get_traits(
        &self,
        request: Request<pb::GetTraitsRequest>,
    ) -> RpcResult<pb::GetTraitsResponse> {
        let pb::GetTraitsRequest {
            customer_id: raw_customer,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = customer_id(&mut v, &raw_customer);
        v.finish()?;
        let Some(customer) = customer else {
            return Err(ApiError::internal("validated fields are present").into());
        };
        let customer = known_customer(&self.profile, &customer).await?;
        let state = load_states(&self.profile.db, std::slice::from_ref(&customer))
            .await
            .map_err(ApiError::from)?
            .remove(&customer)
            .unwrap_or_else(TraitState::default);
        let granted = self
            .profile
            .collection
            .granted_categories(&customer)
            .await?;
        let traits = state.traits(
            &customer,
            self.profile.clock.now(),
            self.profile.reporting_currency,
            &granted,
        );
        Ok(Response::new(pb::GetTraitsResponse {
            traits: Some(traits),
        }))
    }
}
