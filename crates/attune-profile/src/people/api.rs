//! `attune.profile.v1.ProfileService`: each RPC validates its request into a
//! command (`convert`), runs it (`service`) and wraps the answer.

use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, page_size};
use attune_kit::types::CustomerId;
use attune_proto::profile::v1 as pb;
use attune_proto::profile::v1::profile_service_server::ProfileService;
use tonic::{Request, Response, Status};

use super::convert;
use super::profiles::MergedRow;
use super::service::People;
use crate::Profile;

/// The gRPC service over profile's state.
#[derive(Debug, Clone)]
pub struct ProfileApi {
    people: People,
}

impl ProfileApi {
    pub fn new(profile: Profile) -> Self {
        Self {
            people: People::new(profile),
        }
    }

    fn key(&self) -> &attune_kit::secrets::PseudonymKey {
        &self.people.profile.key
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn create_profile(
        &self,
        request: Request<pb::CreateProfileRequest>,
    ) -> RpcResult<pb::CreateProfileResponse> {
        let command = convert::create(self.key(), request.into_inner())?;
        let profile = self.people.create(command).await?;
        tracing::info!("profile created");
        Ok(Response::new(pb::CreateProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> RpcResult<pb::GetProfileResponse> {
        let customer = convert::customer_id(&request.into_inner().customer_id)?;
        let profile = self.people.get(&customer).await?;
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> RpcResult<pb::UpdateProfileResponse> {
        let command = convert::update(request.into_inner())?;
        let profile = self.people.update(command).await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn list_merged_customer_ids(
        &self,
        request: Request<pb::ListMergedCustomerIdsRequest>,
    ) -> RpcResult<pb::ListMergedCustomerIdsResponse> {
        let pb::ListMergedCustomerIdsRequest {
            customer_id,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let limit = v.check_field(page_size("page_size", raw_size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, MergedRow::parse_cursor);
        v.finish()?;
        let page = self
            .people
            .list_merged(&checked(customer), after, checked(limit))
            .await?;
        Ok(Response::new(page))
    }

    async fn lookup_profile(
        &self,
        request: Request<pb::LookupProfileRequest>,
    ) -> RpcResult<pb::LookupProfileResponse> {
        let identity = convert::lookup(self.key(), &request.into_inner())?;
        let profile = self.people.lookup(&identity).await?;
        Ok(Response::new(pb::LookupProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn link_identity(
        &self,
        request: Request<pb::LinkIdentityRequest>,
    ) -> RpcResult<pb::LinkIdentityResponse> {
        let pb::LinkIdentityRequest {
            customer_id,
            identity,
            request_id,
        } = request.into_inner();
        let command =
            convert::identity_change(self.key(), &customer_id, identity.as_ref(), &request_id)?;
        let profile = self.people.link(command).await?;
        Ok(Response::new(pb::LinkIdentityResponse {
            profile: Some(profile),
        }))
    }

    async fn unlink_identity(
        &self,
        request: Request<pb::UnlinkIdentityRequest>,
    ) -> RpcResult<pb::UnlinkIdentityResponse> {
        let pb::UnlinkIdentityRequest {
            customer_id,
            identity,
            request_id,
        } = request.into_inner();
        let command =
            convert::identity_change(self.key(), &customer_id, identity.as_ref(), &request_id)?;
        let profile = self.people.unlink(command).await?;
        Ok(Response::new(pb::UnlinkIdentityResponse {
            profile: Some(profile),
        }))
    }

    async fn merge_profiles(
        &self,
        request: Request<pb::MergeProfilesRequest>,
    ) -> RpcResult<pb::MergeProfilesResponse> {
        let command = convert::merge(request.into_inner())?;
        let merged = self.people.merge(command).await?;
        tracing::info!(
            moved_events = merged.moved_event_count,
            moved_identities = merged.moved_identity_count,
            "profiles merged"
        );
        Ok(Response::new(merged))
    }

    async fn set_zero_party_data(
        &self,
        request: Request<pb::SetZeroPartyDataRequest>,
    ) -> RpcResult<pb::SetZeroPartyDataResponse> {
        let command = convert::set_zero_party(request.into_inner())?;
        let data = self.people.set_zero_party(command).await?;
        Ok(Response::new(pb::SetZeroPartyDataResponse {
            data: Some(data),
        }))
    }

    async fn get_zero_party_data(
        &self,
        request: Request<pb::GetZeroPartyDataRequest>,
    ) -> RpcResult<pb::GetZeroPartyDataResponse> {
        let customer = convert::customer_id(&request.into_inner().customer_id)?;
        let data = self.people.get_zero_party(&customer).await?;
        Ok(Response::new(pb::GetZeroPartyDataResponse {
            data: Some(data),
        }))
    }
}
