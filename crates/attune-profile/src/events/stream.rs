//! `StreamEvents`: the kit's feed watch over `profile_feed`, filtered by event
//! kind and cut into batches of the asked size.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::feed::{Batch, StartAt};
use attune_proto::profile::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::Profile;
use crate::feed::Entry;

/// What a follower asked for, validated.
#[derive(Debug, Clone)]
pub(crate) struct FeedQuery {
    pub after_sequence: i64,
    pub event_kinds: Vec<i32>,
    pub max_batch_size: usize,
    pub stop_at_head: bool,
}

/// The responses of one follower's stream.
pub(crate) type FeedStream = ReceiverStream<Result<pb::StreamEventsResponse, Status>>;

/// Opens the stream: OUT_OF_RANGE beyond the newest sequence.
pub(crate) async fn stream_events(
    profile: &Profile,
    query: FeedQuery,
) -> Result<FeedStream, ApiError> {
    let mut batches = Arc::clone(&profile.feed)
        .watch(StartAt::After(query.after_sequence))
        .await
        .map_err(|error| match error {
            attune_kit::feed::StartError::BeyondNewest { asked, newest } => ApiError::OutOfRange(
                format!("after_sequence {asked} is beyond the newest sequence ({newest})"),
            ),
            other => ApiError::from(other),
        })?;
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(batch) = batches.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(error))).await;
                    return;
                }
            };
            let caught_up = batch.changes.is_empty();
            for response in responses(batch, &query) {
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
            if caught_up && query.stop_at_head {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// One kit batch as responses of at most `max_batch_size` entries; the last
/// one carries the batch's position (entries filtered out still advance it).
fn responses(batch: Batch<Entry>, query: &FeedQuery) -> Vec<pb::StreamEventsResponse> {
    let entries: Vec<pb::FeedEntry> = batch
        .changes
        .into_iter()
        .map(|Entry(entry)| entry)
        .filter(|entry| match &entry.change {
            Some(pb::feed_entry::Change::Event(event)) => {
                query.event_kinds.is_empty() || query.event_kinds.contains(&event.kind)
            }
            _ => true,
        })
        .collect();
    if entries.is_empty() {
        return vec![pb::StreamEventsResponse {
            entries,
            through_sequence: batch.position,
        }];
    }
    let mut responses = Vec::with_capacity(entries.len().div_ceil(query.max_batch_size));
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<pb::FeedEntry> = entries.by_ref().take(query.max_batch_size).collect();
        let through_sequence = match entries.peek() {
            Some(_) => chunk.last().map_or(batch.position, |entry| entry.sequence),
            None => batch.position,
        };
        responses.push(pb::StreamEventsResponse {
            entries: chunk,
            through_sequence,
        });
    }
    responses
}
