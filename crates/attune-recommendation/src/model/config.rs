//! The knobs of training and ranking. `ModelConfig::default()` is the
//! configuration chosen by measurement (docs/recommendation-eval.md).

/// How much each kind of interaction says about a customer's interest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalWeights {
    pub view: f32,
    pub cart_add: f32,
    /// Negative: taking an item out of the cart says "not now".
    pub cart_remove: f32,
    pub purchase: f32,
    pub recommendation_click: f32,
}

impl Default for SignalWeights {
    fn default() -> Self {
        SignalWeights {
            view: 1.0,
            cart_add: 3.0,
            cart_remove: -1.5,
            purchase: 5.0,
            recommendation_click: 2.0,
        }
    }
}

/// The item-to-item collaborative model behind "customers like you also ...".
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Collaborative {
    /// Cosine similarity of the items' customer sets, shrunk towards 0 for
    /// items seen together rarely.
    ItemKnn { shrink: f32 },
    /// RP3beta (Paudel et al.): a random walk item -> customer -> item, its
    /// probabilities raised to `alpha`, divided by the target's popularity to
    /// the power `beta` so best-sellers do not crowd every list.
    Rp3Beta { alpha: f32, beta: f32 },
    /// EASE (Steck, 2019) over the `head` items bought by the most customers:
    /// a dense `head × head` Gram matrix inverted while training (`head² × 8`
    /// bytes, so `head` is bounded by [`MAX_EASE_HEAD`]), regularized by
    /// `lambda`; items outside the head keep item-KNN's neighbours (cosine,
    /// shrink 20), their similarities times `tail_weight`.
    Ease {
        lambda: f32,
        head: usize,
        tail_weight: f32,
    },
}

/// The largest EASE head: its Gram matrix and inverse take 288 MB while training.
pub const MAX_EASE_HEAD: usize = 6000;

impl Collaborative {
    /// A short stable name (model versions, eval tables).
    pub fn name(&self) -> &'static str {
        match self {
            Collaborative::ItemKnn { .. } => "item-knn",
            Collaborative::Rp3Beta { .. } => "rp3beta",
            Collaborative::Ease { .. } => "ease",
        }
    }
}

/// Everything one training and its rankings read.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub signals: SignalWeights,
    /// Popularity (trending) halves every this many days.
    pub popularity_half_life_days: f32,
    /// Interest shown without buying (views, carts, clicks) halves every this many days.
    pub interest_half_life_days: f32,
    /// TIFU-KNN's basket decay: the k-th most recent basket weighs `basket_decay^k`.
    pub basket_decay: f32,
    pub collaborative: Collaborative,
    /// Neighbours kept per item for the collaborative model.
    pub neighbours: usize,
    /// Neighbours kept per item for bought-together and viewed-together.
    pub cooccurrence_neighbours: usize,
    /// Views further apart than this start a new browsing session (viewed-together).
    pub session_gap_minutes: u32,
    /// Only a customer's most recent items feed co-occurrence counts: a few
    /// heavy accounts (shops, bots) must not dominate them or training time.
    pub max_items_per_user: usize,
    /// The blend: the customer's own items ...
    pub personal_weight: f32,
    /// ... what the collaborative neighbours of those items add ...
    pub collaborative_weight: f32,
    /// ... and popularity, the fallback that also breaks ties.
    pub popularity_weight: f32,
    /// Discovery's blend (nothing bought before may appear, so the customer's
    /// own items weigh little): the collaborative part ...
    pub discovery_collaborative_weight: f32,
    /// ... and popularity.
    pub discovery_popularity_weight: f32,
    /// How a recent session item counts next to the customer's strongest
    /// trained item (1.0 = as much).
    pub recent_weight: f32,
    /// Only this many of the customer's strongest items seed the collaborative
    /// part of a ranking (bounds latency for long histories).
    pub seeds: usize,
    /// Buy-again damps an item bought at a steady cadence while it is not yet
    /// due: at `elapsed / interval = r` its score is multiplied by
    /// `max(r, due_floor)` capped at 1. 1.0 turns cadence off.
    pub due_floor: f32,
    /// Training threads; 0 uses every core.
    pub threads: usize,
}

/// Chosen on the Instacart sample's tuning split (each user's second-to-last
/// basket; docs/recommendation-eval.md): a basket decay of 0.8 beats 0.7 and
/// 0.9; the collaborative and popularity parts are small next to the
/// customer's own items for the next basket and decide discovery; a cadence
/// damping (`due_floor` < 1) lowered next-basket NDCG, so it is off. For
/// discovery EASE over the 4,000 items bought by the most customers (lambda
/// 300) beat item-KNN, RP3beta and EASE with an item-KNN tail, and a smaller
/// popularity part than the next basket's.
impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            signals: SignalWeights::default(),
            popularity_half_life_days: 14.0,
            interest_half_life_days: 30.0,
            basket_decay: 0.8,
            collaborative: Collaborative::Ease {
                lambda: 300.0,
                head: 4000,
                tail_weight: 0.0,
            },
            neighbours: 50,
            cooccurrence_neighbours: 30,
            session_gap_minutes: 30,
            max_items_per_user: 200,
            personal_weight: 1.0,
            collaborative_weight: 0.05,
            popularity_weight: 0.02,
            discovery_collaborative_weight: 0.05,
            discovery_popularity_weight: 0.005,
            recent_weight: 1.0,
            seeds: 50,
            due_floor: 1.0,
            threads: 0,
        }
    }
}

impl ModelConfig {
    /// The first problem with these knobs, if any.
    pub(crate) fn check(&self) -> Result<(), String> {
        let finite_positive = [
            ("popularity_half_life_days", self.popularity_half_life_days),
            ("interest_half_life_days", self.interest_half_life_days),
        ];
        for (name, value) in finite_positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("{name} must be a positive number"));
            }
        }
        if !(self.basket_decay > 0.0 && self.basket_decay <= 1.0) {
            return Err("basket_decay must be in (0, 1]".into());
        }
        let weights = [
            ("personal_weight", self.personal_weight),
            ("collaborative_weight", self.collaborative_weight),
            ("popularity_weight", self.popularity_weight),
            (
                "discovery_collaborative_weight",
                self.discovery_collaborative_weight,
            ),
            (
                "discovery_popularity_weight",
                self.discovery_popularity_weight,
            ),
            ("recent_weight", self.recent_weight),
            ("due_floor", self.due_floor),
        ];
        for (name, value) in weights {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a non-negative number"));
            }
        }
        if self.neighbours == 0 || self.cooccurrence_neighbours == 0 || self.seeds == 0 {
            return Err("neighbours, cooccurrence_neighbours and seeds must be positive".into());
        }
        if self.max_items_per_user < 2 {
            return Err("max_items_per_user must be at least 2".into());
        }
        match self.collaborative {
            Collaborative::ItemKnn { shrink } if !(shrink.is_finite() && shrink >= 0.0) => {
                Err("item-knn shrink must be a non-negative number".into())
            }
            Collaborative::Rp3Beta { alpha, beta }
                if !(alpha.is_finite() && alpha > 0.0 && beta.is_finite() && beta >= 0.0) =>
            {
                Err("rp3beta needs alpha > 0 and beta >= 0".into())
            }
            Collaborative::Ease {
                lambda,
                head,
                tail_weight,
            } if !(lambda.is_finite()
                && lambda > 0.0
                && (1..=MAX_EASE_HEAD).contains(&head)
                && tail_weight.is_finite()
                && tail_weight >= 0.0) =>
            {
                Err(format!(
                    "ease needs lambda > 0, a head of 1 to {MAX_EASE_HEAD} items and tail_weight >= 0"
                ))
            }
            _ => Ok(()),
        }
    }
}
