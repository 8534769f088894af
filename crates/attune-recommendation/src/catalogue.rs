//! The catalogue mirror: items as the retailer pushes them, validated and
//! merged field by field (AIP-134, see the proto), stored, and held in memory as
//! an immutable snapshot that upserts replace whole (readers never lock).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use attune_kit::error::Violations;
use attune_kit::types::Money;
use attune_proto::recommendation::v1 as pb;

/// The longest item id, title, brand and URI accepted.
const MAX_ITEM_ID: usize = 128;
const MAX_TITLE: usize = 300;
const MAX_BRAND: usize = 100;
const MAX_URI: usize = 2048;
const MAX_CATEGORY_ID: usize = 128;
const MAX_CATEGORY_NAME: usize = 200;
const MAX_PATH: usize = 8;
const MAX_ATTRIBUTES: usize = 50;
const MAX_ATTRIBUTE_KEY: usize = 64;
const MAX_ATTRIBUTE_VALUE: usize = 256;

/// The catalogue in memory: every stored item by id, in id order for listing
/// and hashed for the lookups answers make by the hundred.
#[derive(Debug, Default)]
pub struct Catalogue {
    items: BTreeMap<String, Arc<pb::CatalogItem>>,
    /// The same items: a lookup here is one hash and one comparison, where
    /// the ordered map walks a dozen nodes spread over memory.
    by_id: crate::idmap::IdMap<String, Arc<pb::CatalogItem>>,
}

impl Catalogue {
    /// The catalogue of `items`.
    pub fn new(items: impl IntoIterator<Item = pb::CatalogItem>) -> Self {
        Self::indexed(
            items
                .into_iter()
                .map(|item| (item.item_id.clone(), Arc::new(item)))
                .collect(),
        )
    }

    fn indexed(items: BTreeMap<String, Arc<pb::CatalogItem>>) -> Self {
        let by_id = items
            .iter()
            .map(|(id, item)| (id.clone(), Arc::clone(item)))
            .collect();
        Self { items, by_id }
    }

    /// The item `item_id`, if stored.
    pub fn get(&self, item_id: &str) -> Option<&Arc<pb::CatalogItem>> {
        self.by_id.get(item_id)
    }

    /// Every item, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<pb::CatalogItem>> {
        self.items.values()
    }

    /// Items after `after` (exclusive) in id order.
    pub fn after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a Arc<pb::CatalogItem>> + 'a {
        use std::ops::Bound;
        self.items
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, item)| item)
    }

    /// How many items are stored.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// This catalogue with `changed` replaced and `deleted` gone.
    fn with(&self, changed: &[pb::CatalogItem], deleted: &[String]) -> Self {
        let mut items = self.items.clone();
        for item in changed {
            items.insert(item.item_id.clone(), Arc::new(item.clone()));
        }
        for id in deleted {
            items.remove(id);
        }
        Self::indexed(items)
    }
}

/// The shared handle to the catalogue snapshot.
#[derive(Debug, Default)]
pub struct CatalogueCell {
    current: ArcSwap<Catalogue>,
    /// Counts applied changes, so a full reload that read the table before a
    /// change was applied does not overwrite it.
    applied: std::sync::atomic::AtomicU64,
}

impl CatalogueCell {
    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalogue> {
        self.current.load_full()
    }

    /// Replaces the snapshot with one built afresh (at start).
    pub fn replace(&self, catalogue: Catalogue) {
        self.current.store(Arc::new(catalogue));
    }

    /// How many changes were applied so far: take it before reading the whole
    /// table for [`replace_unless_changed`](Self::replace_unless_changed).
    pub fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the snapshot unless a change was applied since `applied` was
    /// taken (the reload may predate it: read again).
    pub fn replace_unless_changed(&self, applied: u64, catalogue: Catalogue) -> bool {
        let fresh = Arc::new(catalogue);
        let mut replaced = false;
        self.current.rcu(|current| {
            replaced = self.applied() == applied;
            if replaced {
                Arc::clone(&fresh)
            } else {
                Arc::clone(current)
            }
        });
        replaced
    }

    /// Applies a committed change: this replica's own writes after their
    /// commit, other replicas' as their change log arrives. Two may apply at
    /// once; each is applied over the other; readers keep the snapshot they
    /// loaded.
    pub fn apply(&self, changed: &[pb::CatalogItem], deleted: &[String]) {
        self.applied
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.current.rcu(|current| current.with(changed, deleted));
    }
}

/// Whether `item` is in `category` (anywhere on its path).
pub fn in_category(item: &pb::CatalogItem, category: &str) -> bool {
    item.category_path.iter().any(|c| c.category_id == category)
}

/// Whether the item may be recommended at all.
pub fn is_active(item: &pb::CatalogItem) -> bool {
    item.active.unwrap_or(true)
}

/// Whether the item is in stock.
pub fn is_in_stock(item: &pb::CatalogItem) -> bool {
    item.in_stock.unwrap_or(true)
}

/// The item's leaf category.
pub fn leaf_category(item: &pb::CatalogItem) -> Option<&str> {
    item.category_path.last().map(|c| c.category_id.as_str())
}

fn printable_id(raw: &str, max: usize) -> Result<(), String> {
    if raw.is_empty() || raw.len() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Checks an item id.
pub fn check_item_id(raw: &str) -> Result<(), String> {
    printable_id(raw, MAX_ITEM_ID)
}

/// Checks a category id.
pub fn check_category_id(raw: &str) -> Result<(), String> {
    printable_id(raw, MAX_CATEGORY_ID)
}

fn at_most(v: &mut Violations, field: &str, text: &str, max: usize) {
    if text.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

fn snake_key(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_ATTRIBUTE_KEY
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A top-level CatalogItem field an update mask may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Title,
    CategoryPath,
    Brand,
    Price,
    OriginalPrice,
    InStock,
    StockQuantity,
    Attributes,
    Active,
    Uri,
    ImageUri,
    LaunchTime,
    SourceVersion,
}

impl Field {
    /// The field named `path`, if a mask may name it.
    pub fn parse(path: &str) -> Option<Self> {
        Some(match path {
            "title" => Self::Title,
            "category_path" => Self::CategoryPath,
            "brand" => Self::Brand,
            "price" => Self::Price,
            "original_price" => Self::OriginalPrice,
            "in_stock" => Self::InStock,
            "stock_quantity" => Self::StockQuantity,
            "attributes" => Self::Attributes,
            "active" => Self::Active,
            "uri" => Self::Uri,
            "image_uri" => Self::ImageUri,
            "launch_time" => Self::LaunchTime,
            "source_version" => Self::SourceVersion,
            _ => return None,
        })
    }
}

/// Checks the fields `item` carries (each on its own; whether the merged item
/// is complete is [`check_complete`]'s). `field` is the item's path in the request.
pub fn check_fields(v: &mut Violations, field: &str, item: &pb::CatalogItem) {
    let pb::CatalogItem {
        item_id,
        title,
        category_path,
        brand,
        price,
        original_price,
        in_stock: _,
        stock_quantity,
        attributes,
        active: _,
        uri,
        image_uri,
        launch_time,
        source_version,
        update_time: _,
    } = item;
    v.check(format!("{field}.item_id"), check_item_id(item_id));
    at_most(v, &format!("{field}.title"), title, MAX_TITLE);
    if category_path.len() > MAX_PATH {
        v.add(
            format!("{field}.category_path"),
            format!("must have at most {MAX_PATH} entries"),
        );
    }
    for (i, category) in category_path.iter().enumerate() {
        v.check(
            format!("{field}.category_path[{i}].category_id"),
            check_category_id(&category.category_id),
        );
        at_most(
            v,
            &format!("{field}.category_path[{i}].display_name"),
            &category.display_name,
            MAX_CATEGORY_NAME,
        );
    }
    at_most(v, &format!("{field}.brand"), brand, MAX_BRAND);
    let price = price.clone().map(|p| {
        let checked = Money::from_proto(&format!("{field}.price"), p);
        v.check_field(checked.clone());
        if let Ok(money) = checked
            && money.amount_minor() < 0
        {
            v.add(
                format!("{field}.price.amount_minor"),
                "must not be negative",
            );
        }
        checked.ok()
    });
    if let Some(original) = original_price.clone() {
        let checked = Money::from_proto(&format!("{field}.original_price"), original);
        if let (Ok(original), Some(Some(price))) = (&checked, &price)
            && original.currency() != price.currency()
        {
            v.add(
                format!("{field}.original_price.currency_code"),
                "must be the currency of price",
            );
        }
        if let Ok(original) = &checked
            && original.amount_minor() < 0
        {
            v.add(
                format!("{field}.original_price.amount_minor"),
                "must not be negative",
            );
        }
        v.check_field(checked);
    }
    if stock_quantity.is_some_and(|n| n < 0) {
        v.add(format!("{field}.stock_quantity"), "must not be negative");
    }
    if attributes.len() > MAX_ATTRIBUTES {
        v.add(
            format!("{field}.attributes"),
            format!("must have at most {MAX_ATTRIBUTES} entries"),
        );
    }
    for (key, value) in attributes {
        if !snake_key(key) {
            v.add(
                format!("{field}.attributes"),
                format!("keys must be lower snake case, 1 to {MAX_ATTRIBUTE_KEY} characters"),
            );
        }
        if value.chars().count() > MAX_ATTRIBUTE_VALUE {
            v.add(
                format!("{field}.attributes"),
                format!("values must be at most {MAX_ATTRIBUTE_VALUE} characters"),
            );
        }
    }
    at_most(v, &format!("{field}.uri"), uri, MAX_URI);
    at_most(v, &format!("{field}.image_uri"), image_uri, MAX_URI);
    if let Some(launch) = launch_time {
        v.check(
            format!("{field}.launch_time"),
            attune_kit::types::time::from_proto(*launch),
        );
    }
    if *source_version < 0 {
        v.add(format!("{field}.source_version"), "must not be negative");
    }
}

/// Checks that a merged item has its required fields.
pub fn check_complete(v: &mut Violations, field: &str, item: &pb::CatalogItem) {
    if item.title.is_empty() {
        v.add(format!("{field}.title"), "must not be empty");
    }
    if item.category_path.is_empty() {
        v.add(format!("{field}.category_path"), "must have 1 to 8 entries");
    }
    match &item.price {
        None => v.add(format!("{field}.price"), "must be set"),
        Some(price) => {
            if let (Some(original), Ok(price)) = (
                &item.original_price,
                Money::from_proto("price", price.clone()),
            ) && Money::from_proto("original_price", original.clone())
                .is_ok_and(|original| original.currency() != price.currency())
            {
                v.add(
                    format!("{field}.original_price.currency_code"),
                    "must be the currency of price",
                );
            }
        }
    }
}

/// The item a new `sent` creates: defaults for what it leaves out.
pub fn create(sent: pb::CatalogItem, update_time: prost_types::Timestamp) -> pb::CatalogItem {
    pb::CatalogItem {
        in_stock: Some(sent.in_stock.unwrap_or(true)),
        active: Some(sent.active.unwrap_or(true)),
        update_time: Some(update_time),
        ..sent
    }
}

/// `stored` updated by `sent`: with an empty mask every populated field of
/// `sent` replaces the stored one; with a mask exactly the named fields do
/// (cleared when unpopulated).
pub fn merge(
    stored: &pb::CatalogItem,
    sent: pb::CatalogItem,
    mask: &[Field],
    update_time: prost_types::Timestamp,
) -> pb::CatalogItem {
    let mut item = stored.clone();
    let all: Vec<Field> = if mask.is_empty() {
        populated(&sent)
    } else {
        mask.to_vec()
    };
    let pb::CatalogItem {
        item_id: _,
        title,
        category_path,
        brand,
        price,
        original_price,
        in_stock,
        stock_quantity,
        attributes,
        active,
        uri,
        image_uri,
        launch_time,
        source_version,
        update_time: _,
    } = sent;
    let named: HashSet<Field> = all.into_iter().collect();
    if named.contains(&Field::Title) {
        item.title = title;
    }
    if named.contains(&Field::CategoryPath) {
        item.category_path = category_path;
    }
    if named.contains(&Field::Brand) {
        item.brand = brand;
    }
    if named.contains(&Field::Price) {
        item.price = price;
    }
    if named.contains(&Field::OriginalPrice) {
        item.original_price = original_price;
    }
    if named.contains(&Field::InStock) {
        item.in_stock = Some(in_stock.unwrap_or(true));
    }
    if named.contains(&Field::StockQuantity) {
        item.stock_quantity = stock_quantity;
    }
    if named.contains(&Field::Attributes) {
        item.attributes = attributes;
    }
    if named.contains(&Field::Active) {
        item.active = Some(active.unwrap_or(true));
    }
    if named.contains(&Field::Uri) {
        item.uri = uri;
    }
    if named.contains(&Field::ImageUri) {
        item.image_uri = image_uri;
    }
    if named.contains(&Field::LaunchTime) {
        item.launch_time = launch_time;
    }
    if named.contains(&Field::SourceVersion) {
        item.source_version = source_version;
    }
    item.update_time = Some(update_time);
    item
}

/// The fields `sent` populates (see the proto's Partial updates).
fn populated(sent: &pb::CatalogItem) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut add = |yes: bool, field: Field| {
        if yes {
            fields.push(field);
        }
    };
    add(!sent.title.is_empty(), Field::Title);
    add(!sent.category_path.is_empty(), Field::CategoryPath);
    add(!sent.brand.is_empty(), Field::Brand);
    add(sent.price.is_some(), Field::Price);
    add(sent.original_price.is_some(), Field::OriginalPrice);
    add(sent.in_stock.is_some(), Field::InStock);
    add(sent.stock_quantity.is_some(), Field::StockQuantity);
    add(!sent.attributes.is_empty(), Field::Attributes);
    add(sent.active.is_some(), Field::Active);
    add(!sent.uri.is_empty(), Field::Uri);
    add(!sent.image_uri.is_empty(), Field::ImageUri);
    add(sent.launch_time.is_some(), Field::LaunchTime);
    add(sent.source_version != 0, Field::SourceVersion);
    fields
}
