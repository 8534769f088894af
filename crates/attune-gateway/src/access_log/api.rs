//! `ListDataAccess`: a customer's recorded reads, newest first.

use attune_kit::ApiError;
use attune_kit::db::micros;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};
use attune_kit::types::{CustomerId, time};
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::data_access_service_server::DataAccessService;
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use super::store::{self, Entry};
use super::writer::Flush;

/// Serves `attune.gateway.v1.DataAccessService`.
#[derive(Clone, Debug)]
pub(super) struct DataAccessApi {
    db: DatabaseConnection,
    flush: Flush,
}

impl DataAccessApi {
    pub(super) fn new(db: DatabaseConnection, flush: Flush) -> Self {
        Self { db, flush }
    }
}

#[tonic::async_trait]
impl DataAccessService for DataAccessApi {
    async fn list_data_access(
        &self,
        request: Request<pb::ListDataAccessRequest>,
    ) -> Result<Response<pb::ListDataAccessResponse>, Status> {
        let pb::ListDataAccessRequest {
            customer_id,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let limit = v.check_field(page_size("page_size", raw_size, 50, 500));
        let before = decode_cursor(&mut v, "page_token", &page_token, |c| c.parse::<i64>().ok());
        v.finish()?;
        let (customer, limit) = (checked(customer), checked(limit));
        // A first page shows every read recorded before it: the writer may
        // still be gathering them.
        if before.is_none() {
            self.flush.pending_entries().await;
        }
        let rows = store::newest_first(&self.db, customer.as_ref(), before, u64::from(limit) + 1)
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = next_page(rows, limit, |row| row.id.to_string());
        let accesses = rows
            .into_iter()
            .map(|row| view(row.into_entry().1))
            .collect();
        Ok(Response::new(pb::ListDataAccessResponse {
            accesses,
            next_page_token,
        }))
    }
}

/// An entry as the customer sees it.
pub(super) fn view(entry: Entry) -> pb::DataAccess {
    pb::DataAccess {
        access_time: micros::from_micros(entry.access_micros)
            .ok()
            .map(time::to_proto),
        caller_kind: entry.caller_kind() as i32,
        purpose_codes: entry.purpose_codes(),
        data_categories: entry.data_categories().into_iter().map(i32::from).collect(),
        caller_name: entry.caller_name,
        store_id: entry.store_id,
        rpc: entry.rpc,
        customer_id: entry.customer_id,
    }
}
