//! `attune.recommendation.v1.RecommendationService`: each RPC parses its
//! request, calls the service, converts back.

use attune_kit::ApiError;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};
use attune_proto::recommendation::v1 as pb;
use attune_proto::recommendation::v1::recommendation_service_server::RecommendationService;
use tonic::{Request, Response, Status};

use crate::answer::{self, Request as Ask};
use crate::app::Recommendation;
use crate::catalogue::{self, check_category_id};
use crate::{audiences, convert, experiments, store, training, writes};

/// The public API over the service's state.
#[derive(Clone)]
pub struct RecommendationApi {
    app: Recommendation,
}

impl RecommendationApi {
    pub fn new(app: Recommendation) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {
    async fn upsert_items(
        &self,
        request: Request<pb::UpsertItemsRequest>,
    ) -> Result<Response<pb::UpsertItemsResponse>, Status> {
        let done = writes::upsert_items(&self.app, request.into_inner()).await?;
        Ok(Response::new(pb::UpsertItemsResponse {
            created_count: done.created_count,
            updated_count: done.updated_count,
            stale_item_ids: done.stale_item_ids,
        }))
    }

    async fn delete_items(
        &self,
        request: Request<pb::DeleteItemsRequest>,
    ) -> Result<Response<pb::DeleteItemsResponse>, Status> {
        let done = writes::delete_items(&self.app, request.into_inner()).await?;
        Ok(Response::new(pb::DeleteItemsResponse {
            deleted_count: done.deleted_count,
            not_found_item_ids: done.not_found_item_ids,
        }))
    }

    async fn get_item(
        &self,
        request: Request<pb::GetItemRequest>,
    ) -> Result<Response<pb::GetItemResponse>, Status> {
        let pb::GetItemRequest { item_id } = request.into_inner();
        convert::item_id("item_id", &item_id)?;
        let item = self
            .app
            .catalogue
            .load()
            .get(&item_id)
            .map(|item| (**item).clone())
            .ok_or_else(|| ApiError::NotFound(format!("item {item_id} is not in the catalogue")))?;
        Ok(Response::new(pb::GetItemResponse { item: Some(item) }))
    }

    async fn list_items(
        &self,
        request: Request<pb::ListItemsRequest>,
    ) -> Result<Response<pb::ListItemsResponse>, Status> {
        let pb::ListItemsRequest {
            category_id,
            include_inactive,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        if !category_id.is_empty() {
            v.check("category_id", check_category_id(&category_id));
        }
        let size = v.check_field(page_size("page_size", raw_size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, |c| {
            catalogue::check_item_id(c).ok().map(|()| c.to_owned())
        });
        v.finish()?;
        let size = checked(size);
        let snapshot = self.app.catalogue.load();
        let rows: Vec<pb::CatalogItem> = snapshot
            .after(after.as_deref().unwrap_or_default())
            .filter(|item| include_inactive || catalogue::is_active(item))
            .filter(|item| category_id.is_empty() || catalogue::in_category(item, &category_id))
            .take(size as usize + 1)
            .map(|item| (**item).clone())
            .collect();
        let (items, next_page_token) = next_page(rows, size, |item| item.item_id.clone());
        Ok(Response::new(pb::ListItemsResponse {
            items,
            next_page_token,
        }))
    }

    async fn get_recommendations(
        &self,
        request: Request<pb::GetRecommendationsRequest>,
    ) -> Result<Response<pb::GetRecommendationsResponse>, Status> {
        let ask = Ask::try_from(request.into_inner())?;
        let answer = answer::recommend(&self.app, ask).await?;
        Ok(Response::new(pb::GetRecommendationsResponse {
            items: answer.items,
            personalization: Some(answer.personalization),
            recommendation_id: answer.recommendation_id,
            model_version: answer.model_version,
            next_page_token: answer.next_page_token,
            variant: answer.variant,
        }))
    }

    async fn get_similar_items(
        &self,
        request: Request<pb::GetSimilarItemsRequest>,
    ) -> Result<Response<pb::GetSimilarItemsResponse>, Status> {
        let ask = Ask::try_from(request.into_inner())?;
        let answer = answer::recommend(&self.app, ask).await?;
        Ok(Response::new(pb::GetSimilarItemsResponse {
            items: answer.items,
            personalization: Some(answer.personalization),
            recommendation_id: answer.recommendation_id,
            model_version: answer.model_version,
            variant: answer.variant,
        }))
    }

    async fn get_complements(
        &self,
        request: Request<pb::GetComplementsRequest>,
    ) -> Result<Response<pb::GetComplementsResponse>, Status> {
        let ask = Ask::try_from(request.into_inner())?;
        let answer = answer::recommend(&self.app, ask).await?;
        Ok(Response::new(pb::GetComplementsResponse {
            items: answer.items,
            personalization: Some(answer.personalization),
            recommendation_id: answer.recommendation_id,
            model_version: answer.model_version,
            variant: answer.variant,
        }))
    }

    async fn rerank_items(
        &self,
        request: Request<pb::RerankItemsRequest>,
    ) -> Result<Response<pb::RerankItemsResponse>, Status> {
        let rerank = convert::Rerank::try_from(request.into_inner())?;
        let answer = answer::rerank(
            &self.app,
            rerank.customer.as_deref(),
            &rerank.candidates,
            &rerank.context,
        )
        .await?;
        Ok(Response::new(pb::RerankItemsResponse {
            items: answer.items,
            personalization: Some(answer.personalization),
            recommendation_id: answer.recommendation_id,
            variant: answer.variant,
        }))
    }

    async fn list_retargeting_audiences(
        &self,
        request: Request<pb::ListRetargetingAudiencesRequest>,
    ) -> Result<Response<pb::ListRetargetingAudiencesResponse>, Status> {
        Ok(Response::new(
            audiences::list(&self.app, request.into_inner()).await?,
        ))
    }

    async fn list_audience_members(
        &self,
        request: Request<pb::ListAudienceMembersRequest>,
    ) -> Result<Response<pb::ListAudienceMembersResponse>, Status> {
        Ok(Response::new(
            audiences::members(&self.app, request.into_inner()).await?,
        ))
    }

    async fn get_buy_again(
        &self,
        request: Request<pb::GetBuyAgainRequest>,
    ) -> Result<Response<pb::GetBuyAgainResponse>, Status> {
        let ask = convert::BuyAgain::try_from(request.into_inner())?;
        let answer = answer::buy_again(&self.app, &ask.customer, &ask.filter, ask.count).await?;
        Ok(Response::new(pb::GetBuyAgainResponse {
            items: answer.items,
            personalization: Some(answer.personalization),
            recommendation_id: answer.recommendation_id,
        }))
    }

    async fn train_model(
        &self,
        request: Request<pb::TrainModelRequest>,
    ) -> Result<Response<pb::TrainModelResponse>, Status> {
        let status = writes::train_model(&self.app, request.into_inner()).await?;
        Ok(Response::new(pb::TrainModelResponse {
            status: Some(status),
        }))
    }

    async fn get_model_status(
        &self,
        request: Request<pb::GetModelStatusRequest>,
    ) -> Result<Response<pb::GetModelStatusResponse>, Status> {
        let pb::GetModelStatusRequest {} = request.into_inner();
        Ok(Response::new(pb::GetModelStatusResponse {
            status: Some(training::model_status(&self.app)),
        }))
    }

    async fn put_experiment(
        &self,
        request: Request<pb::PutExperimentRequest>,
    ) -> Result<Response<pb::PutExperimentResponse>, Status> {
        let experiment = writes::put_experiment(&self.app, request.into_inner()).await?;
        Ok(Response::new(pb::PutExperimentResponse {
            experiment: Some(experiment),
        }))
    }

    async fn get_experiment_report(
        &self,
        request: Request<pb::GetExperimentReportRequest>,
    ) -> Result<Response<pb::GetExperimentReportResponse>, Status> {
        let pb::GetExperimentReportRequest {
            experiment_id,
            attribution_window,
        } = request.into_inner();
        let mut v = Violations::default();
        convert::snake_id(&mut v, "experiment_id", &experiment_id);
        const DAY: i64 = 86_400 * 1_000_000;
        let window = match attribution_window {
            None => 7 * DAY,
            Some(d) => {
                let micros = d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos / 1000);
                if d.seconds < 0 || d.nanos < 0 || micros > 90 * DAY {
                    v.add("attribution_window", "must be 0 to 90 days");
                }
                if micros == 0 { 7 * DAY } else { micros }
            }
        };
        v.finish()?;
        let db = &self.app.db;
        let experiment = store::experiments::get(db, &experiment_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no experiment {experiment_id}")))?;
        let impressions = store::experiments::impressions(db, &experiment_id)
            .await
            .map_err(ApiError::from)?;
        let events = store::interactions::attribution(db, &experiment_id)
            .await
            .map_err(ApiError::from)?;
        let variants = experiments::report(&experiment, &impressions, &events, window);
        Ok(Response::new(pb::GetExperimentReportResponse {
            experiment: Some(experiment),
            variants,
        }))
    }
}
