//! Answers: recommendations for a placement, similar items, complements,
//! re-ranking and buy-again, all from one pipeline — consent decides what of
//! the customer may be read, the served models propose candidates under the
//! business rules, score rules and diversity shape the list, and every item is
//! explained.

pub mod filter;
pub mod paging;
pub mod personal;
pub mod reasons;

use std::collections::{BTreeSet, HashSet};

use crate::idmap::{IdMap, IdSet};
use crate::model::{IxMap, IxSet};
use std::sync::Arc;

use attune_kit::ApiError;
use attune_proto::common::v1 as common_pb;
use attune_proto::recommendation::v1 as pb;

use crate::app::Recommendation;
use crate::catalogue::{self, Catalogue};
use crate::experiments::Assigned;
use crate::impressions::Impression;
use crate::model::{Because, ItemIx, Scored, Task};
use crate::served::{ItemsByIx, Snapshot};
use filter::{Availability, Diversity, Filter, Known};
use paging::Page;
use personal::{Decision, Personal};
use reasons::Origins;

/// Where recommendations are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Home,
    ProductPage,
    Cart,
    Checkout,
    Email,
    CategoryPage,
    SearchResults,
}

/// What an answer is asked for.
#[derive(Debug, Clone)]
pub enum Ask {
    Placement(Placement),
    Similar(String),
    Complements(Vec<String>),
}

/// What the customer is looking at now.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub current: Vec<String>,
    pub cart: Vec<String>,
    pub category: Option<String>,
    pub query: String,
}

/// A parsed recommendation request.
#[derive(Debug, Clone)]
pub struct Request {
    pub customer: Option<String>,
    pub ask: Ask,
    pub context: Context,
    pub filter: Filter,
    pub count: usize,
    pub page: Option<Page>,
}

/// An answer.
pub struct Answer {
    pub items: Vec<pb::RecommendedItem>,
    pub personalization: common_pb::Personalization,
    pub recommendation_id: String,
    pub model_version: String,
    pub next_page_token: String,
    pub variant: String,
}

/// A candidate: the catalogue's item, score, and why. The reason is put into
/// words only for the items a page shows (a few of a pool several times larger).
struct Candidate {
    item: Arc<pb::CatalogItem>,
    /// The item's index in the served snapshot, for a model's candidate.
    ix: Option<ItemIx>,
    score: f64,
    why: Why,
}

impl Candidate {
    /// Best first: the higher score, then the lower item id. A training
    /// numbers the catalogue's items in id order, so two candidates of the
    /// snapshot compare by index, without reading either id (many candidates
    /// tie on score, and each id read is a cache miss into the catalogue).
    fn order(&self, other: &Candidate) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| match (self.ix, other.ix) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => self.item.item_id.cmp(&other.item.item_id),
            })
    }
}

/// Why a candidate is proposed, before it is put into words.
enum Why {
    /// A model scored it.
    Model(Because),
    /// The catalogue alone suggests it, related to the item on screen or new.
    Catalogue(Option<Arc<pb::CatalogItem>>),
}

/// How many of the customer's strongest history items decide their favourite
/// categories (with the session's items).
const FAVOURITE_FROM: usize = 50;

/// Weight of an item on screen and of one in the cart, as session items.
const CONTEXT_WEIGHT: f32 = 3.0;
const CART_WEIGHT: f32 = 2.0;

/// Everything one answer reads, loaded once.
struct Scope {
    snapshot: Option<Arc<Snapshot>>,
    catalogue: Arc<Catalogue>,
    /// The catalogue's items by the snapshot's indexes, when built for both.
    items: Option<Arc<ItemsByIx>>,
    now: i64,
}

impl Scope {
    fn load(app: &Recommendation) -> Self {
        let snapshot = app.served.load();
        let catalogue = app.catalogue.load();
        let items = snapshot
            .as_ref()
            .and_then(|snapshot| app.served.items_by_ix(snapshot, &catalogue));
        Scope {
            snapshot,
            catalogue,
            items,
            now: app.clock.now().timestamp_micros(),
        }
    }

    /// The catalogue's item at the snapshot's index `ix`, if both have it.
    fn item(&self, ix: ItemIx) -> Option<&Arc<pb::CatalogItem>> {
        match &self.items {
            Some(items) => items.get(ix),
            None => self
                .snapshot
                .as_ref()?
                .item_id(ix)
                .and_then(|id| self.catalogue.get(id)),
        }
    }

    /// The availability of the catalogue's item at the snapshot's index `ix`,
    /// when the item table is built.
    fn availability(&self, ix: ItemIx) -> Option<Availability> {
        self.items.as_ref()?.availability(ix)
    }

    /// The leaf category of the catalogue's item at the snapshot's index `ix`.
    fn leaf_category(&self, ix: ItemIx) -> Option<&str> {
        match &self.items {
            Some(items) => items.leaf_category(ix),
            None => self
                .item(ix)
                .and_then(|item| catalogue::leaf_category(item)),
        }
    }

    fn ix(&self, item_id: &str) -> Option<ItemIx> {
        self.snapshot.as_ref().and_then(|s| s.item(item_id))
    }

    fn ixs(&self, ids: &[String]) -> Vec<ItemIx> {
        ids.iter().filter_map(|id| self.ix(id)).collect()
    }
}

/// What of the customer (and the request's context) the candidates start from.
struct Seeds {
    recent: Vec<(ItemIx, f32)>,
    user: Option<crate::model::UserIx>,
    origins: Origins,
    known: Known,
    favourite_categories: IdSet<String>,
    /// Category and brand affinities from the session's items, for the
    /// content fallback of a customer the models do not know yet.
    categories: Vec<(crate::model::CategoryIx, f32)>,
    brands: Vec<(crate::model::BrandIx, f32)>,
}

fn seeds(scope: &Scope, decision: &Decision, context: &Context, ask: &Ask) -> Seeds {
    let mut origins = Origins::default();
    let mut known = Known::default();
    let mut recent: IxMap<ItemIx, f32> = IxMap::default();
    let mut add = |ix: Option<ItemIx>, weight: f32| {
        if let Some(ix) = ix {
            *recent.entry(ix).or_default() += weight;
        }
    };
    for id in &context.current {
        origins.context.insert(id.clone());
        add(scope.ix(id), CONTEXT_WEIGHT);
    }
    for id in &context.cart {
        origins.context.insert(id.clone());
        known.cart.insert(id.clone());
        add(scope.ix(id), CART_WEIGHT);
    }
    match ask {
        // A product page never recommends the product on it.
        Ask::Placement(Placement::ProductPage) => {
            known.never.extend(context.current.iter().cloned());
        }
        Ask::Placement(_) => {}
        Ask::Similar(item) => {
            origins.context.insert(item.clone());
            known.never.insert(item.clone());
        }
        Ask::Complements(cart) => {
            for id in cart {
                origins.context.insert(id.clone());
                known.cart.insert(id.clone());
                known.never.insert(id.clone());
            }
        }
    }
    let mut user = None;
    let mut favourite_categories = IdSet::default();
    if let Some(Personal {
        session,
        user: ix,
        tastes,
    }) = &decision.personal
    {
        origins.personal = true;
        user = *ix;
        if let Some(tastes) = tastes {
            origins.tastes = taste_categories(tastes);
            origins.declared = tastes.declared;
        }
        for (id, weight) in session.recent_items() {
            add(scope.ix(id), weight);
        }
        for (id, _) in &session.viewed {
            origins.viewed.insert(id.clone());
        }
        for (id, _) in &session.cart {
            origins.cart.insert(id.clone());
            known.cart.insert(id.clone());
        }
        for (id, at) in &session.bought {
            origins.bought.insert(id.clone());
            known.bought.insert(id.clone(), *at);
        }
        let mut strongest_leaves: Vec<&str> = Vec::new();
        if let (Some(snapshot), Some(user)) = (&scope.snapshot, user) {
            let history = filter::History {
                snapshot: Arc::clone(snapshot),
                user,
            };
            known.history = Some(history.clone());
            origins.purchases = Some(history);
            strongest_leaves = snapshot
                .models
                .strongest(user, FAVOURITE_FROM)
                .into_iter()
                .filter_map(|ix| scope.leaf_category(ix))
                .collect();
        }
        origins.history = read_categories(decision)
            .into_iter()
            .filter_map(|c| common_pb::DataCategory::try_from(c).ok())
            .collect();
        // The leaf categories the customer engages with most are "favourite":
        // counted over the session and the strongest items of their history.
        let mut counts: IdMap<&str, usize> = IdMap::default();
        let session_leaves = origins
            .viewed
            .iter()
            .chain(&origins.bought)
            .chain(&origins.cart)
            .filter_map(|id| scope.catalogue.get(id))
            .filter_map(|item| catalogue::leaf_category(item));
        for leaf in session_leaves.chain(strongest_leaves) {
            *counts.entry(leaf).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        favourite_categories = ranked
            .iter()
            .take(3)
            .map(|(c, _)| (*c).to_owned())
            .collect();
    }
    let mut recent: Vec<(ItemIx, f32)> = recent.into_iter().collect();
    recent.sort_by_key(|(ix, _)| *ix);
    let (categories, brands) = affinities(scope, decision);
    Seeds {
        recent,
        user,
        origins,
        known,
        favourite_categories,
        categories,
        brands,
    }
}

/// The data categories of tastes read from profile.
fn taste_categories(tastes: &crate::tastes::Tastes) -> Vec<common_pb::DataCategory> {
    use common_pb::DataCategory as D;
    let mut categories = Vec::new();
    if tastes.derived {
        categories.extend([D::Browsing, D::Purchases]);
    }
    if tastes.declared {
        categories.push(D::Preferences);
    }
    categories
}

/// Weights per category or brand index.
type Affinities = Vec<(u32, f32)>;

/// The customer's category and brand affinities from the session's items
/// (each item's path and brand, weighted as the session weighs the item) and,
/// for a customer the models do not know, the tastes profile gave.
fn affinities(scope: &Scope, decision: &Decision) -> (Affinities, Affinities) {
    let (Some(personal), Some(snapshot)) = (&decision.personal, &scope.snapshot) else {
        return (Vec::new(), Vec::new());
    };
    let mut categories: IxMap<u32, f32> = IxMap::default();
    let mut brands: IxMap<u32, f32> = IxMap::default();
    for (id, weight) in personal.session.recent_items() {
        let Some(item) = scope.catalogue.get(id) else {
            continue;
        };
        for category in &item.category_path {
            if let Some(&ix) = snapshot.indexes.category_ix.get(&category.category_id) {
                *categories.entry(ix).or_default() += weight;
            }
        }
        if let Some(&ix) = snapshot.indexes.brand_ix.get(&item.brand) {
            *brands.entry(ix).or_default() += weight;
        }
    }
    if let Some(tastes) = &personal.tastes {
        for (category, weight) in &tastes.categories {
            if let Some(&ix) = snapshot.indexes.category_ix.get(category) {
                *categories.entry(ix).or_default() += weight;
            }
        }
        for (brand, weight) in &tastes.brands {
            if let Some(&ix) = snapshot.indexes.brand_ix.get(brand) {
                *brands.entry(ix).or_default() += weight;
            }
        }
    }
    let mut categories: Vec<_> = categories.into_iter().collect();
    let mut brands: Vec<_> = brands.into_iter().collect();
    categories.sort_by_key(|(ix, _)| *ix);
    brands.sort_by_key(|(ix, _)| *ix);
    (categories, brands)
}

/// Normalizes scores to 0..1 by the list's best.
fn normalized(list: &[Scored]) -> IxMap<ItemIx, f32> {
    let best = list.iter().map(|s| s.score).fold(0.0f32, f32::max);
    list.iter()
        .map(|s| (s.item, if best > 0.0 { s.score / best } else { 0.0 }))
        .collect()
}

/// `primary` re-scored with the customer's own scores: the primary reason stays.
fn blend_personal(scope: &Scope, seeds: &Seeds, primary: Vec<Scored>) -> Vec<Scored> {
    let Some(snapshot) = &scope.snapshot else {
        return primary;
    };
    if seeds.user.is_none() && seeds.recent.is_empty() {
        return primary;
    }
    let candidates: Vec<ItemIx> = primary.iter().map(|s| s.item).collect();
    let personal = normalized(&snapshot.models.score(
        seeds.user,
        &seeds.recent,
        scope.now,
        &candidates,
    ));
    let base = normalized(&primary);
    let mut blended: Vec<Scored> = primary
        .into_iter()
        .map(|s| Scored {
            score: base.get(&s.item).copied().unwrap_or(0.0)
                + 0.5 * personal.get(&s.item).copied().unwrap_or(0.0),
            ..s
        })
        .collect();
    blended.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    blended
}

/// Appends `more` to `list`, skipping items already in it.
fn extend_unique(list: &mut Vec<Scored>, more: Vec<Scored>) {
    let mut seen: IxSet<ItemIx> = list.iter().map(|s| s.item).collect();
    let floor = list.iter().map(|s| s.score).fold(f32::INFINITY, f32::min);
    let floor = if floor.is_finite() { floor } else { 1.0 };
    let best = more.iter().map(|s| s.score).fold(0.0f32, f32::max);
    for s in more {
        if seen.insert(s.item) {
            // Below everything already listed, in their own order.
            let scaled = if best > 0.0 { s.score / best } else { 0.0 };
            list.push(Scored {
                score: floor * 0.5 * scaled.max(0.01),
                ..s
            });
        }
    }
}

/// The models' candidates for the request.
fn model_candidates(
    scope: &Scope,
    request: &Request,
    seeds: &Seeds,
    pool: usize,
    exclude: &dyn Fn(ItemIx) -> bool,
) -> Vec<Scored> {
    let Some(snapshot) = &scope.snapshot else {
        return Vec::new();
    };
    let models = &snapshot.models;
    let task = if request.filter.exclude_purchased {
        Task::Discovery
    } else {
        Task::NextBasket
    };
    let personal = seeds.user.is_some() || seeds.origins.personal;
    let mut list = match &request.ask {
        Ask::Similar(item) => match scope.ix(item) {
            Some(ix) => {
                let mut similar = models.similar(ix, pool, exclude);
                extend_unique(&mut similar, models.viewed_together(&[ix], pool, exclude));
                blend_personal(scope, seeds, similar)
            }
            None => Vec::new(),
        },
        Ask::Complements(cart) => {
            let together = models.bought_together(&scope.ixs(cart), pool, exclude);
            blend_personal(scope, seeds, together)
        }
        Ask::Placement(placement) => {
            let context = &request.context;
            let cart: Vec<String> = context
                .cart
                .iter()
                .cloned()
                .chain(seeds.origins.cart.iter().cloned())
                .collect();
            match placement {
                Placement::ProductPage if !context.current.is_empty() && !personal => {
                    let ixs = scope.ixs(&context.current);
                    let mut list = match ixs.first() {
                        Some(&ix) => models.similar(ix, pool, exclude),
                        None => Vec::new(),
                    };
                    extend_unique(&mut list, models.viewed_together(&ixs, pool, exclude));
                    extend_unique(&mut list, models.bought_together(&ixs, pool, exclude));
                    list
                }
                Placement::Cart | Placement::Checkout if !cart.is_empty() => {
                    let together = models.bought_together(&scope.ixs(&cart), pool, exclude);
                    blend_personal(scope, seeds, together)
                }
                Placement::CategoryPage if context.category.is_some() && !personal => {
                    let category = context
                        .category
                        .as_ref()
                        .and_then(|c| snapshot.indexes.category_ix.get(c).copied());
                    match category {
                        Some(category) => models.popular(Some(category), pool, exclude),
                        None => Vec::new(),
                    }
                }
                Placement::SearchResults if !context.query.is_empty() => {
                    let matches = search(scope, &context.query, 500);
                    let mut scored = models.score(seeds.user, &seeds.recent, scope.now, &matches);
                    scored.retain(|s| !exclude(s.item));
                    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                    scored
                }
                _ => models.recommend(seeds.user, &seeds.recent, task, scope.now, pool, exclude),
            }
        }
    };
    // A customer the models do not know yet: what matches their tastes (the
    // categories and brands of their session, and what profile knows of them)
    // after what their session itself points at, before what is merely popular.
    if seeds.user.is_none() && (!seeds.categories.is_empty() || !seeds.brands.is_empty()) {
        let (mut personal, popular): (Vec<Scored>, Vec<Scored>) = list
            .into_iter()
            .partition(|s| !matches!(s.because, Because::Popular | Because::PopularIn(_)));
        extend_unique(
            &mut personal,
            models.content(&seeds.categories, &seeds.brands, pool, exclude),
        );
        extend_unique(&mut personal, popular);
        list = personal;
    }
    if list.len() < pool {
        let category = request
            .context
            .category
            .as_ref()
            .and_then(|c| snapshot.indexes.category_ix.get(c).copied());
        extend_unique(&mut list, models.popular(category, pool, exclude));
    }
    list
}

/// Catalogue items whose title, brand or category mention every word of
/// `query` (case-insensitive), as the models' indexes.
fn search(scope: &Scope, query: &str, limit: usize) -> Vec<ItemIx> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    scope
        .catalogue
        .iter()
        .filter(|item| {
            let text = format!(
                "{} {} {}",
                item.title,
                item.brand,
                item.category_path
                    .iter()
                    .map(|c| format!("{} {}", c.category_id, c.display_name))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
            .to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .filter_map(|item| scope.ix(&item.item_id))
        .take(limit)
        .collect()
}

/// Items the models do not know yet (no models yet, or newer than them), that
/// pass the filter: those sharing a leaf category with the item on screen
/// first, then the newest.
fn catalogue_candidates(
    scope: &Scope,
    request: &Request,
    known: &Known,
    pool: usize,
) -> Vec<Candidate> {
    let anchor = match &request.ask {
        Ask::Similar(item) => Some(item.clone()),
        _ => request.context.current.first().cloned(),
    };
    let anchor = anchor.and_then(|id| scope.catalogue.get(&id).cloned());
    let anchor_leaf = anchor
        .as_ref()
        .and_then(|a| catalogue::leaf_category(a).map(str::to_owned));
    let mut items: Vec<&Arc<pb::CatalogItem>> = scope
        .catalogue
        .iter()
        .filter(|item| scope.ix(&item.item_id).is_none())
        .filter(|item| request.filter.admits(item, known, scope.now))
        .filter(|item| {
            request
                .context
                .category
                .as_ref()
                .is_none_or(|c| catalogue::in_category(item, c))
        })
        .collect();
    let launch = |item: &pb::CatalogItem| {
        item.launch_time
            .or(item.update_time)
            .map_or(0, |t| t.seconds)
    };
    items.sort_by(|a, b| {
        let related_a = anchor_leaf
            .as_deref()
            .is_some_and(|l| catalogue::leaf_category(a) == Some(l));
        let related_b = anchor_leaf
            .as_deref()
            .is_some_and(|l| catalogue::leaf_category(b) == Some(l));
        related_b
            .cmp(&related_a)
            .then(launch(b).cmp(&launch(a)))
            .then(a.item_id.cmp(&b.item_id))
    });
    items
        .into_iter()
        .take(pool)
        .enumerate()
        .map(|(n, item)| {
            let related = anchor_leaf
                .as_deref()
                .is_some_and(|l| catalogue::leaf_category(item) == Some(l));
            let anchor = anchor.as_ref().filter(|_| related);
            Candidate {
                item: Arc::clone(item),
                ix: None,
                // Below every model candidate, in this order.
                score: 1e-6 / (1.0 + n as f64),
                why: Why::Catalogue(anchor.cloned()),
            }
        })
        .collect()
}

/// Answers a recommendation request.
pub async fn recommend(app: &Recommendation, mut request: Request) -> Result<Answer, ApiError> {
    // A category page shows its category only (unless the filter names others).
    if let (Ask::Placement(Placement::CategoryPage), Some(category)) =
        (&request.ask, &request.context.category)
        && request.filter.categories.is_empty()
    {
        request.filter.categories.push(category.clone());
    }
    let scope = Scope::load(app);
    if let Ask::Similar(item) = &request.ask
        && scope.catalogue.get(item).is_none()
    {
        return Err(ApiError::NotFound(format!(
            "item {item} is not in the catalogue"
        )));
    }
    let first_page = request.page.is_none();
    let (recommendation_id, shown) = match &request.page {
        Some(page) => (page.recommendation_id.clone(), page.shown.clone()),
        None => (uuid::Uuid::new_v4().to_string(), Vec::new()),
    };
    let assigned = app
        .experiments
        .assign(request.customer.as_deref().unwrap_or(&recommendation_id));
    let decision = match &assigned {
        Some(assigned) if assigned.is_holdout() => Decision::holdout(),
        _ => personal::decide(app, request.customer.as_deref(), scope.snapshot.as_deref()).await?,
    };
    let seeds = seeds(&scope, &decision, &request.context, &request.ask);
    let want = shown.len() + request.count;
    let pool = (want * 3 + 30).min(2000);
    let filter = &request.filter;
    let admits = |ix: ItemIx| {
        scope.item(ix).is_some_and(|item| {
            let availability = scope
                .availability(ix)
                .unwrap_or_else(|| Availability::of(item));
            filter.admits_available(item, availability, &seeds.known, scope.now)
        })
    };
    let exclude = |ix: ItemIx| !admits(ix);
    let scored = model_candidates(&scope, &request, &seeds, pool, &exclude);
    let mut candidates: Vec<Candidate> = scored
        .into_iter()
        .filter_map(|s| {
            Some(Candidate {
                item: Arc::clone(scope.item(s.item)?),
                ix: Some(s.item),
                score: f64::from(s.score),
                why: Why::Model(s.because),
            })
        })
        .collect();
    if candidates.len() < pool {
        candidates.extend(catalogue_candidates(&scope, &request, &seeds.known, pool));
    }
    let variant_rules = variant_rules(assigned.as_ref());
    let answer = finish(&scope, &request, &seeds, candidates, &shown, &variant_rules);
    if first_page && let Some(assigned) = &assigned {
        record_impression(app, &recommendation_id, assigned);
    }
    let mut used: BTreeSet<i32> = answer
        .items
        .iter()
        .flat_map(|item| item.data_categories.iter().copied())
        .collect();
    used.extend(read_categories(&decision));
    let mut shown = shown;
    shown.extend(answer.items.iter().map(|i| paging::mark(&i.item_id)));
    let next_page_token = if answer.more && shown.len() < paging::MAX_ITEMS {
        attune_kit::pagination::encode_page_token(
            &Page {
                recommendation_id: recommendation_id.clone(),
                shown,
            }
            .cursor(),
        )
    } else {
        String::new()
    };
    Ok(Answer {
        items: answer.items,
        personalization: decision.personalization(&used),
        recommendation_id,
        model_version: scope
            .snapshot
            .as_ref()
            .map(|s| s.models.version().to_owned())
            .unwrap_or_default(),
        next_page_token,
        variant: assigned.map(|a| a.variant.name).unwrap_or_default(),
    })
}

/// The categories of the customer's data an answer read to rank at all: the
/// session (browsing, and purchases when it holds some) and the customer's
/// history in the models (both).
fn read_categories(decision: &Decision) -> Vec<i32> {
    use common_pb::DataCategory as D;
    let Some(personal) = &decision.personal else {
        return Vec::new();
    };
    let session = &personal.session;
    let mut read = Vec::new();
    if personal.user.is_some()
        || !session.viewed.is_empty()
        || !session.cart.is_empty()
        || !session.searches.is_empty()
    {
        read.push(D::Browsing as i32);
    }
    if personal.user.is_some() || !session.bought.is_empty() {
        read.push(D::Purchases as i32);
    }
    if let Some(tastes) = &personal.tastes {
        read.extend(taste_categories(tastes).into_iter().map(|c| c as i32));
    }
    read.sort_unstable();
    read.dedup();
    read
}

fn variant_rules(assigned: Option<&Assigned>) -> Vec<filter::ScoreRule> {
    assigned
        .filter(|a| a.variant.kind == pb::VariantKind::Rules as i32)
        .map(|a| {
            a.variant
                .score_rules
                .iter()
                .map(crate::convert::score_rule_unchecked)
                .collect()
        })
        .unwrap_or_default()
}

/// Remembers, off the request path, which variant served the answer.
fn record_impression(app: &Recommendation, recommendation_id: &str, assigned: &Assigned) {
    app.impressions.record(Impression {
        recommendation_id: recommendation_id.to_owned(),
        experiment_id: assigned.experiment_id.clone(),
        variant: assigned.variant.name.clone(),
        create_time: app.clock.now().timestamp_micros(),
    });
}

/// The page of an answer.
struct Finished {
    items: Vec<pb::RecommendedItem>,
    more: bool,
}

/// Applies score rules, sorts, caps diversity, skips what earlier pages
/// showed, and explains the page's items.
fn finish(
    scope: &Scope,
    request: &Request,
    seeds: &Seeds,
    candidates: Vec<Candidate>,
    shown: &[paging::Mark],
    variant_rules: &[filter::ScoreRule],
) -> Finished {
    // The first candidate of each item stays. The catalogue holds one `Arc`
    // per id, so its address stands for the id without copying the string.
    let mut seen: IdSet<*const pb::CatalogItem> = IdSet::default();
    let mut ranked: Vec<Candidate> = candidates
        .into_iter()
        .filter_map(|mut c| {
            if !seen.insert(Arc::as_ptr(&c.item)) {
                return None;
            }
            c.score *= request.filter.factor(&c.item, variant_rules);
            Some(c)
        })
        .collect();
    // Unstable is enough: ids are unique after the dedup, so no two tie.
    ranked.sort_unstable_by(Candidate::order);
    let origins = &seeds.origins;
    let shown: HashSet<paging::Mark> = shown.iter().copied().collect();
    let mut diversity = Diversity::default();
    let mut items = Vec::new();
    let mut more = false;
    for candidate in ranked {
        let item = &candidate.item;
        if !diversity.admit(&request.filter, item) {
            continue;
        }
        if shown.contains(&paging::mark(&item.item_id)) {
            continue;
        }
        if items.len() == request.count {
            more = true;
            break;
        }
        let explained = match candidate.why {
            Why::Model(because) => reasons::explain(
                because,
                &item.item_id,
                scope.snapshot.as_deref(),
                &scope.catalogue,
                origins,
                &seeds.favourite_categories,
            ),
            Why::Catalogue(anchor) => reasons::from_catalogue(
                anchor
                    .as_deref()
                    .map(|a| (a.item_id.as_str(), a.title.as_str())),
            ),
        };
        let further = reasons::further(item, &explained.reason, origins, scope.now);
        let mut categories: BTreeSet<i32> = explained
            .categories
            .iter()
            .chain(further.iter().flat_map(|f| f.categories.iter()))
            .map(|c| *c as i32)
            .collect();
        if !origins.personal {
            categories.clear();
        }
        items.push(pb::RecommendedItem {
            item_id: item.item_id.clone(),
            item: Some((**item).clone()),
            rank: i32::try_from(shown.len() + items.len() + 1).unwrap_or(i32::MAX),
            score: candidate.score,
            reason: Some(explained.reason),
            further_reasons: further.into_iter().map(|f| f.reason).collect(),
            data_categories: categories.into_iter().collect(),
        });
    }
    Finished { items, more }
}

/// Why a buy-again answer holds nothing, or what it holds.
pub struct BuyAgainAnswer {
    pub items: Vec<pb::BuyAgainItem>,
    pub personalization: common_pb::Personalization,
    pub recommendation_id: String,
}

/// The customer's buy-again items, most due first.
pub async fn buy_again(
    app: &Recommendation,
    customer_id: &str,
    filter: &Filter,
    count: usize,
) -> Result<BuyAgainAnswer, ApiError> {
    let snapshot = app.served.load();
    let catalogue = app.catalogue.load();
    let now = app.clock.now().timestamp_micros();
    let recommendation_id = uuid::Uuid::new_v4().to_string();
    let decision = personal::decide(app, Some(customer_id), snapshot.as_deref()).await?;
    let (
        Some(Personal {
            user: Some(user), ..
        }),
        Some(snapshot),
    ) = (&decision.personal, snapshot.as_deref())
    else {
        let mut decision = decision;
        if decision.personal.is_some() {
            // Consented and known, but nothing bought yet in the models.
            decision = Decision {
                personal: None,
                not_personalized: common_pb::NonPersonalizedReason::ColdStart,
            };
        }
        return Ok(BuyAgainAnswer {
            items: Vec::new(),
            personalization: decision.personalization(&BTreeSet::new()),
            recommendation_id,
        });
    };
    // Buying again is the point: "exclude purchased" does not apply here.
    let filter = Filter {
        exclude_purchased: false,
        ..filter.clone()
    };
    let known = Known::default();
    let admits = |ix: ItemIx| {
        snapshot
            .item_id(ix)
            .and_then(|id| catalogue.get(id))
            .is_some_and(|item| filter.admits(item, &known, now))
    };
    let exclude = |ix: ItemIx| !admits(ix);
    let pool = (count * 3 + 30).min(2000);
    let mut diversity = Diversity::default();
    let mut scored: Vec<(f64, crate::model::BuyAgain, Arc<pb::CatalogItem>)> = snapshot
        .models
        .buy_again(*user, now, pool, &exclude)
        .into_iter()
        .filter_map(|b| {
            let item = catalogue.get(snapshot.item_id(b.item)?)?.clone();
            Some((f64::from(b.score) * filter.factor(&item, &[]), b, item))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.item_id.cmp(&b.2.item_id)));
    let to_time = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros).map(attune_kit::types::time::to_proto)
    };
    let items: Vec<pb::BuyAgainItem> = scored
        .into_iter()
        .filter(|(_, _, item)| diversity.admit(&filter, item))
        .take(count)
        .enumerate()
        .map(|(n, (score, b, item))| {
            let text = match b.interval {
                Some(interval) => format!(
                    "You buy this every ~{} days",
                    (interval as f64 / 86_400_000_000.0).round().max(1.0)
                ),
                None => format!(
                    "You bought this {} time{}",
                    b.purchases,
                    if b.purchases == 1 { "" } else { "s" }
                ),
            };
            pb::BuyAgainItem {
                item: Some(pb::RecommendedItem {
                    item_id: item.item_id.clone(),
                    rank: i32::try_from(n + 1).unwrap_or(i32::MAX),
                    score,
                    reason: Some(pb::Reason {
                        kind: pb::ReasonKind::Purchased.into(),
                        text,
                        ref_item_id: item.item_id.clone(),
                        ref_category_id: String::new(),
                    }),
                    further_reasons: Vec::new(),
                    data_categories: vec![common_pb::DataCategory::Purchases.into()],
                    item: Some((*item).clone()),
                }),
                purchase_count: i32::try_from(b.purchases).unwrap_or(i32::MAX),
                last_purchase_time: to_time(b.last),
                typical_interval: b.interval.and_then(|i| {
                    prost_types::Duration::try_from(std::time::Duration::from_micros(
                        u64::try_from(i).ok()?,
                    ))
                    .ok()
                }),
                expected_next_purchase_time: b.expected_next.and_then(to_time),
            }
        })
        .collect();
    let used: BTreeSet<i32> = [common_pb::DataCategory::Purchases as i32].into();
    Ok(BuyAgainAnswer {
        items,
        personalization: decision.personalization(&used),
        recommendation_id,
    })
}

/// A re-ranked list.
pub struct Reranked {
    pub items: Vec<pb::RankedItem>,
    pub personalization: common_pb::Personalization,
    pub recommendation_id: String,
    pub variant: String,
}

/// Re-ranks `candidates` for the customer: known items by personal score
/// (stable), unknown ones after them in the order given.
pub async fn rerank(
    app: &Recommendation,
    customer: Option<&str>,
    candidates: &[String],
    context: &Context,
) -> Result<Reranked, ApiError> {
    let scope = Scope::load(app);
    let recommendation_id = uuid::Uuid::new_v4().to_string();
    let assigned = app
        .experiments
        .assign(customer.unwrap_or(&recommendation_id));
    let decision = match &assigned {
        Some(assigned) if assigned.is_holdout() => Decision::holdout(),
        _ => personal::decide(app, customer, scope.snapshot.as_deref()).await?,
    };
    let seeds = seeds(
        &scope,
        &decision,
        context,
        &Ask::Placement(Placement::SearchResults),
    );
    let mut scores: IdMap<String, (f64, Because)> = IdMap::default();
    if let (Some(snapshot), Some(_)) = (&scope.snapshot, &decision.personal) {
        let ixs: Vec<ItemIx> = candidates
            .iter()
            .filter_map(|id| snapshot.item(id))
            .collect();
        for s in snapshot
            .models
            .score(seeds.user, &seeds.recent, scope.now, &ixs)
        {
            if let Some(id) = snapshot.item_id(s.item) {
                scores.insert(id.to_owned(), (f64::from(s.score), s.because));
            }
        }
    }
    let mut order: Vec<(usize, &String, bool, f64)> = candidates
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let known = scope.catalogue.get(id).is_some();
            let score = scores.get(id).map_or(0.0, |(s, _)| *s);
            (n, id, known, score)
        })
        .collect();
    // Without personalization the caller's order stands.
    if decision.personal.is_some() {
        order.sort_by(|a, b| b.2.cmp(&a.2).then(b.3.total_cmp(&a.3)).then(a.0.cmp(&b.0)));
    }
    let mut used = BTreeSet::new();
    let items = order
        .into_iter()
        .enumerate()
        .map(|(rank, (original, id, known, score))| {
            let moved_up = rank < original && score > 0.0;
            let reason = match scores.get(id) {
                Some((_, because)) if moved_up => {
                    let explained = reasons::explain(
                        *because,
                        id,
                        scope.snapshot.as_deref(),
                        &scope.catalogue,
                        &seeds.origins,
                        &seeds.favourite_categories,
                    );
                    used.extend(explained.categories.iter().map(|c| *c as i32));
                    explained.reason
                }
                _ => pb::Reason {
                    kind: pb::ReasonKind::SearchMatch.into(),
                    text: "Matches your search".to_owned(),
                    ref_item_id: String::new(),
                    ref_category_id: String::new(),
                },
            };
            pb::RankedItem {
                item_id: id.clone(),
                rank: i32::try_from(rank + 1).unwrap_or(i32::MAX),
                original_rank: i32::try_from(original + 1).unwrap_or(i32::MAX),
                score,
                reason: Some(reason),
                known,
            }
        })
        .collect();
    used.extend(read_categories(&decision));
    Ok(Reranked {
        items,
        personalization: decision.personalization(&used),
        recommendation_id,
        variant: assigned.map(|a| a.variant.name).unwrap_or_default(),
    })
}
