//! Recommendation for end-to-end tests: a typed client, catalogue items that
//! are valid by default, and the waits a test needs because learning from
//! profile's feed and training run in the background.

use std::time::Duration;

use attune_proto::recommendation::v1 as pb;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use tonic::transport::Channel;

use crate::TestApp;
use crate::profile_events::eur;

/// A catalogue item: `item_id` in `categories` (root first) of `brand` at
/// `price_minor` euro cents, active and in stock.
pub fn catalog_item(
    item_id: &str,
    categories: &[&str],
    brand: &str,
    price_minor: i64,
) -> pb::CatalogItem {
    pb::CatalogItem {
        item_id: item_id.into(),
        title: format!("Title of {item_id}"),
        category_path: categories
            .iter()
            .map(|c| pb::CategoryRef {
                category_id: (*c).into(),
                display_name: format!("Name of {c}"),
            })
            .collect(),
        brand: brand.into(),
        price: Some(eur(price_minor)),
        ..Default::default()
    }
}

/// A home-page request for `customer`, 10 items, no filter.
pub fn home(customer: &str) -> pb::GetRecommendationsRequest {
    pb::GetRecommendationsRequest {
        customer_id: customer.into(),
        placement: pb::Placement::Home.into(),
        max_results: 10,
        ..Default::default()
    }
}

/// A fresh request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl TestApp {
    /// A recommendation client on the shared connection.
    pub fn recommendation(&self) -> RecommendationServiceClient<Channel> {
        RecommendationServiceClient::new(self.channel.clone())
    }

    /// Upserts `items`, which must succeed.
    pub async fn upsert_items(&self, items: Vec<pb::CatalogItem>) -> pb::UpsertItemsResponse {
        self.recommendation()
            .upsert_items(pb::UpsertItemsRequest {
                items,
                request_id: request_id(),
                update_mask: None,
            })
            .await
            .expect("the items are stored")
            .into_inner()
    }

    /// The models' status now.
    pub async fn model_status(&self) -> pb::ModelStatus {
        self.recommendation()
            .get_model_status(pb::GetModelStatusRequest {})
            .await
            .expect("the status is answered")
            .into_inner()
            .status
            .expect("a status")
    }

    /// Trains until the served models learned from exactly `interactions`
    /// stored interactions (the follower applies profile's feed in the
    /// background, so a training may start before the last event arrived, or
    /// before a return removed its purchase: then train again).
    pub async fn train_until(&self, interactions: i64) -> pb::ModelStatus {
        for _ in 0..200 {
            // TrainModel marks a training as running before it answers: the
            // status shows it until that training (or the one already
            // running) ends.
            let status = self
                .recommendation()
                .train_model(pb::TrainModelRequest {
                    request_id: request_id(),
                })
                .await
                .expect("the training starts")
                .into_inner()
                .status
                .expect("a status");
            let mut now = status;
            for _ in 0..500 {
                now = self.model_status().await;
                if !now.training {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                now.last_error.is_empty(),
                "training failed: {}",
                now.last_error
            );
            if now.interaction_count == interactions {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the models never learned {interactions} interactions");
    }

    /// Asks until `done` holds for the answer (the follower applies events in
    /// the background), and returns that answer.
    pub async fn recommendations_until(
        &self,
        request: pb::GetRecommendationsRequest,
        done: impl Fn(&pb::GetRecommendationsResponse) -> bool,
    ) -> pb::GetRecommendationsResponse {
        let mut last = None;
        for _ in 0..500 {
            let answer = self
                .recommendation()
                .get_recommendations(request.clone())
                .await
                .expect("recommendations are answered")
                .into_inner();
            if done(&answer) {
                return answer;
            }
            last = Some(answer);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the answer never came: {last:?}");
    }
}
