//! One run of an export stream: every data-holding service not done yet (all
//! of them, or those a resume token leaves), service by service, each from its
//! position. Every message carries the resume token of the position after it;
//! each service's part of the stored status follows as its receipt goes out.

use std::sync::Arc;

use attune_kit::secrets::PseudonymKey;
use attune_proto::gateway::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::Tracking;
use super::fanout::{Page, Subject, client, export_page, failed, now};
use super::resume::{Position, Positions};
use super::status::State;
use crate::backend::Backend;

/// What an export run needs.
pub(super) struct ExportRun {
    pub backends: Arc<[Backend]>,
    pub subjects: Vec<Subject>,
    pub key: PseudonymKey,
    pub customer_id: String,
    pub request_id: String,
    pub metadata: MetadataMap,
    pub tracking: Option<Tracking>,
    pub sender: mpsc::Sender<Result<pb::ExportCustomerResponse, Status>>,
}

/// The caller stopped reading the stream.
struct Gone;

impl ExportRun {
    /// Exports from `positions` on; the packages of the services that failed,
    /// or `None` when the caller went away before the stream's end.
    pub(super) async fn run(&self, mut positions: Positions) -> Option<Vec<String>> {
        for index in 0..self.backends.len() {
            if positions.0[index] == Position::Done {
                continue;
            }
            if self.service(index, &mut positions).await.is_err() {
                let reason = "the caller stopped reading the export stream; ask again with the \
                              same request_id and the last resume_token received to get the rest";
                self.record(index, State::Failed, reason, None).await;
                return None;
            }
        }
        let failed = self
            .backends
            .iter()
            .zip(&positions.0)
            .filter(|(_, position)| **position != Position::Done)
            .map(|(backend, _)| backend.package().to_owned())
            .collect();
        Some(failed)
    }

    /// Streams service `index`'s records from its position until its receipt.
    async fn service(&self, index: usize, positions: &mut Positions) -> Result<(), Gone> {
        let backend = &self.backends[index];
        let mut client = client(backend);
        let (mut id, mut page, mut count) = match &positions.0[index] {
            Position::At { id, page, count } => (*id, page.clone(), *count),
            Position::Start | Position::Done => (0, String::new(), 0),
        };
        loop {
            // A token naming more ids than the request has now (a link
            // forgotten since) leaves nothing to export.
            let Some(subject) = self.subjects.get(id) else {
                positions.0[index] = Position::Done;
                let receipt = succeeded(backend, count);
                self.send(backend, positions, "", Vec::new(), Some(receipt.clone()))
                    .await?;
                self.record(index, State::Done, "", Some(&receipt)).await;
                return Ok(());
            };
            match export_page(&mut client, subject, &page, &self.metadata).await {
                Page::Records(records, next) => {
                    count += i64::try_from(records.len()).unwrap_or(i64::MAX);
                    let last = next.is_empty() && id + 1 >= self.subjects.len();
                    positions.0[index] = if last {
                        Position::Done
                    } else if next.is_empty() {
                        Position::At {
                            id: id + 1,
                            page: String::new(),
                            count,
                        }
                    } else {
                        Position::At {
                            id,
                            page: next.clone(),
                            count,
                        }
                    };
                    let receipt = last.then(|| succeeded(backend, count));
                    // An id with nothing to export sends no message of its own.
                    if !records.is_empty() || receipt.is_some() {
                        self.send(
                            backend,
                            positions,
                            &subject.customer_id,
                            records,
                            receipt.clone(),
                        )
                        .await?;
                    }
                    if let Some(receipt) = receipt {
                        self.record(index, State::Done, "", Some(&receipt)).await;
                        return Ok(());
                    }
                    if next.is_empty() {
                        (id, page) = (id + 1, String::new());
                    } else {
                        page = next;
                    }
                }
                Page::Failed(status) => {
                    // The position stays where the last page ended: a resume
                    // asks this service again from there.
                    let receipt = failed(backend, &status);
                    let reason = super::failure_reason(&status);
                    self.send(
                        backend,
                        positions,
                        &subject.customer_id,
                        Vec::new(),
                        Some(receipt.clone()),
                    )
                    .await?;
                    self.record(index, State::Failed, &reason, Some(&receipt))
                        .await;
                    return Ok(());
                }
            }
        }
    }

    async fn send(
        &self,
        backend: &Backend,
        positions: &Positions,
        customer_id: &str,
        records: Vec<attune_proto::privacy::v1::DataRecord>,
        receipt: Option<pb::ServiceReceipt>,
    ) -> Result<(), Gone> {
        let message = pb::ExportCustomerResponse {
            service: backend.package().to_owned(),
            records,
            receipt,
            customer_id: customer_id.to_owned(),
            resume_token: positions.token(&self.key, &self.request_id, &self.customer_id),
        };
        self.sender.send(Ok(message)).await.map_err(|_| Gone)
    }

    /// Records service `index`'s part in the stored status (when kept).
    async fn record(
        &self,
        index: usize,
        state: State,
        reason: &str,
        receipt: Option<&pb::ServiceReceipt>,
    ) {
        if let Some(tracking) = &self.tracking {
            tracking
                .set_part(
                    &self.request_id,
                    self.backends[index].package(),
                    state,
                    reason,
                    receipt,
                )
                .await;
        }
    }
}

fn succeeded(backend: &Backend, record_count: i64) -> pb::ServiceReceipt {
    pb::ServiceReceipt {
        service: backend.package().to_owned(),
        status: pb::ReceiptStatus::Succeeded.into(),
        record_count,
        retained: Vec::new(),
        error_code: 0,
        error_message: String::new(),
        complete_time: Some(now()),
    }
}
