//! One customer's interaction with one item, as learned from profile's feed.

use crate::model;

/// What the customer did with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    View,
    CartAdd,
    CartRemove,
    Purchase,
    RecommendationClick,
}

impl Signal {
    /// The stable stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::CartAdd => "cart_add",
            Self::CartRemove => "cart_remove",
            Self::Purchase => "purchase",
            Self::RecommendationClick => "recommendation_click",
        }
    }

    /// The signal stored as `name`.
    pub fn from_stored(name: &str) -> Option<Self> {
        Some(match name {
            "view" => Self::View,
            "cart_add" => Self::CartAdd,
            "cart_remove" => Self::CartRemove,
            "purchase" => Self::Purchase,
            "recommendation_click" => Self::RecommendationClick,
            _ => return None,
        })
    }

    /// How much a session item of this kind steers the next answer: a purchase
    /// or a cart add says more than a glance at a product page.
    pub fn session_weight(self) -> f32 {
        match self {
            Self::View => 1.0,
            Self::RecommendationClick => 1.5,
            Self::CartAdd => 2.0,
            Self::Purchase => 3.0,
            Self::CartRemove => 0.0,
        }
    }

    /// The model's signal.
    pub fn model(self) -> model::Signal {
        match self {
            Self::View => model::Signal::View,
            Self::CartAdd => model::Signal::CartAdd,
            Self::CartRemove => model::Signal::CartRemove,
            Self::Purchase => model::Signal::Purchase,
            Self::RecommendationClick => model::Signal::RecommendationClick,
        }
    }
}

/// One stored interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub customer_id: String,
    pub item_id: String,
    pub signal: Signal,
    /// Microseconds since the epoch.
    pub occur_time: i64,
    /// The order, for purchases.
    pub order_id: Option<String>,
    pub quantity: u32,
    /// For purchases, the line's revenue in minor units of `currency_code`
    /// (0 and "" otherwise).
    pub revenue_minor: i64,
    pub currency_code: String,
    /// For clicks on a recommendation, its id.
    pub recommendation_id: Option<String>,
}
