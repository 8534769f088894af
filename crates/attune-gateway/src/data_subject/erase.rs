//! One run of an erasure: every data-holding service not done yet is asked at
//! once (the services that link the customer's ids last, once every other is
//! done), each part of the stored status written as its answer arrives. The
//! answer is built from what is stored, so a replay of a completed erasure
//! answers the same receipts.

use attune_proto::gateway::v1 as pb;
use tonic::metadata::MetadataMap;

use super::Tracking;
use super::fanout::{Subjects, erase_at, held_back};
use super::status::{State, Stored, to_stored_precision};
use crate::backend::Backend;

/// What an erasure run needs.
pub(super) struct EraseRun<'a> {
    pub backends: &'a [Backend],
    pub subjects: &'a Subjects,
    pub request_id: &'a str,
    pub metadata: &'a MetadataMap,
    pub tracking: Option<&'a Tracking>,
    /// The request as stored before this run (services done keep their receipts).
    pub before: Option<&'a Stored>,
}

impl EraseRun<'_> {
    /// Erases at every service not done before; every service's receipt, in
    /// service order.
    pub(super) async fn run(&self) -> Vec<pb::ServiceReceipt> {
        let (linking, others): (Vec<&Backend>, Vec<&Backend>) = self
            .backends
            .iter()
            .partition(|backend| self.subjects.linking.contains(&backend.package()));
        // Every service is asked at once; one failing or slow holds no other back.
        let mut receipts =
            futures::future::join_all(others.iter().map(|backend| self.erase(backend))).await;
        let others_done = receipts
            .iter()
            .all(|receipt| receipt.status == pb::ReceiptStatus::Succeeded as i32);
        for backend in linking {
            let receipt = if others_done {
                self.erase(backend).await
            } else if let Some(done) = self.done_before(backend) {
                done
            } else {
                let receipt = to_stored_precision(held_back(backend));
                self.record(
                    backend,
                    State::Pending,
                    "waiting: this service links the customer's ids (merged visitors), which a \
                     re-run needs, so it erases only once every other service is done",
                    None,
                )
                .await;
                receipt
            };
            receipts.push(receipt);
        }
        receipts.sort_by(|a, b| a.service.cmp(&b.service));
        receipts
    }

    fn done_before(&self, backend: &Backend) -> Option<pb::ServiceReceipt> {
        self.before?.done_receipt(backend.package()).cloned()
    }

    /// One service's receipt: stored when it was done before, otherwise its
    /// answer now, recorded.
    async fn erase(&self, backend: &Backend) -> pb::ServiceReceipt {
        if let Some(done) = self.done_before(backend) {
            return done;
        }
        self.record(backend, State::Pending, "asked, no answer yet", None)
            .await;
        let receipt =
            to_stored_precision(erase_at(backend, &self.subjects.ids, self.metadata).await);
        if receipt.status == pb::ReceiptStatus::Succeeded as i32 {
            self.record(backend, State::Done, "", Some(&receipt)).await;
        } else {
            let reason = super::failure_reason_of(&receipt);
            self.record(backend, State::Failed, &reason, Some(&receipt))
                .await;
        }
        receipt
    }

    async fn record(
        &self,
        backend: &Backend,
        state: State,
        reason: &str,
        receipt: Option<&pb::ServiceReceipt>,
    ) {
        if let Some(tracking) = self.tracking {
            tracking
                .set_part(self.request_id, backend.package(), state, reason, receipt)
                .await;
        }
    }
}

/// The answer to an erasure from its receipts.
pub(super) fn answer(
    receipts: Vec<pb::ServiceReceipt>,
    customer_ids: Vec<String>,
) -> pb::EraseCustomerResponse {
    let complete = receipts
        .iter()
        .all(|receipt| receipt.status == pb::ReceiptStatus::Succeeded as i32);
    let erase_time = if complete {
        receipts
            .iter()
            .filter_map(|receipt| receipt.complete_time)
            .max_by_key(|time| (time.seconds, time.nanos))
    } else {
        None
    };
    pb::EraseCustomerResponse {
        receipts,
        complete,
        erase_time,
        customer_ids,
    }
}
