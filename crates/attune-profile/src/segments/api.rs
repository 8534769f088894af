//! The gRPC face of segments: each RPC parses its request, calls the service and
//! converts the answer.

use attune_kit::pagination::next_page;
use attune_proto::profile::v1 as pb;
use attune_proto::profile::v1::segment_service_server::SegmentService;
use tonic::{Request, Response, Status};

use super::convert;
use super::service::Segments;

/// `attune.profile.v1.SegmentService` over profile's state.
#[derive(Debug, Clone)]
pub struct SegmentApi {
    segments: Segments,
}

impl SegmentApi {
    pub fn new(segments: Segments) -> Self {
        Self { segments }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// Rows read for a page: one more than it holds, to tell whether another follows.
fn read_limit(page: &convert::Page) -> u64 {
    u64::from(page.size) + 1
}

#[tonic::async_trait]
impl SegmentService for SegmentApi {
    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> RpcResult<pb::CreateSegmentResponse> {
        let currency = self.segments.profile().reporting_currency;
        let new = convert::create(request.into_inner(), currency)?;
        let segment = self.segments.create(new).await?;
        Ok(Response::new(pb::CreateSegmentResponse {
            segment: Some(segment),
        }))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> RpcResult<pb::UpdateSegmentResponse> {
        let currency = self.segments.profile().reporting_currency;
        let update = convert::update(request.into_inner(), currency)?;
        let segment = self.segments.update(update).await?;
        Ok(Response::new(pb::UpdateSegmentResponse {
            segment: Some(segment),
        }))
    }

    async fn get_segment(
        &self,
        request: Request<pb::GetSegmentRequest>,
    ) -> RpcResult<pb::GetSegmentResponse> {
        let segment_id = convert::get(request.into_inner())?;
        let segment = self.segments.get(&segment_id).await?;
        Ok(Response::new(pb::GetSegmentResponse {
            segment: Some(segment),
        }))
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> RpcResult<pb::ListSegmentsResponse> {
        let page = convert::list(request.into_inner())?;
        let segments = self
            .segments
            .list(page.after.as_deref(), read_limit(&page))
            .await?;
        let (segments, next_page_token) =
            next_page(segments, page.size, |segment| segment.segment_id.clone());
        Ok(Response::new(pb::ListSegmentsResponse {
            segments,
            next_page_token,
        }))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> RpcResult<pb::DeleteSegmentResponse> {
        let deletion = convert::delete(request.into_inner())?;
        self.segments.delete(deletion).await?;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    async fn preview_segment(
        &self,
        request: Request<pb::PreviewSegmentRequest>,
    ) -> RpcResult<pb::PreviewSegmentResponse> {
        let currency = self.segments.profile().reporting_currency;
        let rule = convert::preview(request.into_inner(), currency)?;
        Ok(Response::new(self.segments.preview(&rule).await?))
    }

    async fn list_customer_segments(
        &self,
        request: Request<pb::ListCustomerSegmentsRequest>,
    ) -> RpcResult<pb::ListCustomerSegmentsResponse> {
        let (customer_id, page) = convert::customer_segments(request.into_inner())?;
        let memberships = self
            .segments
            .customer_segments(&customer_id, &page, read_limit(&page))
            .await?;
        let (memberships, next_page_token) =
            next_page(memberships, page.size, |m| m.segment_id.clone());
        Ok(Response::new(pb::ListCustomerSegmentsResponse {
            memberships,
            next_page_token,
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> RpcResult<pb::ListSegmentMembersResponse> {
        let (segment_id, page) = convert::segment_members(request.into_inner())?;
        let memberships = self
            .segments
            .members(&segment_id, &page, read_limit(&page))
            .await?;
        let (memberships, next_page_token) =
            next_page(memberships, page.size, |m| m.customer_id.clone());
        Ok(Response::new(pb::ListSegmentMembersResponse {
            memberships,
            next_page_token,
        }))
    }
}
