//! Each customer's own items, in flat arrays (one slice per customer): how
//! often and when they bought each item (buy-again, cadence) and the personal
//! weight of every item they showed interest in (TIFU-KNN's time-decayed
//! frequency vector, plus decayed views, cart adds and clicks).

use super::config::ModelConfig;
use super::time::{MICROS_PER_DAY, day_of, decay};
use super::{Interaction, ItemIx, Signal, UserIx};

/// Per-customer item rows. Customer `u`'s rows are `offsets[u]..offsets[u + 1]`:
/// first the rows with purchases, then the rows without, each run sorted by
/// item. Only the first run has purchase columns: about half of all rows
/// (views, cart adds) have no purchases, and a purchase count and days would
/// carry nothing for them.
#[derive(Debug, Default)]
pub(crate) struct Histories {
    offsets: Vec<u32>,
    /// Customer `u`'s purchase columns are
    /// `purchase_offsets[u]..purchase_offsets[u + 1]`, one per row of its first
    /// run, in the same order.
    purchase_offsets: Vec<u32>,
    /// Per customer, its rows' positions strongest first (weight descending,
    /// then the lower item): a ranking reads only the head of this order
    /// instead of selecting from the whole history on every call. Positions
    /// within one customer fit 16 bits: a customer keeps at most
    /// [`MAX_ROWS`] rows.
    strength: Vec<u16>,
    items: Vec<ItemIx>,
    weights: Vec<f32>,
    /// Purchase columns: one entry per row with purchases.
    purchases: Vec<u16>,
    first_day: Vec<u16>,
    last_day: Vec<u16>,
    /// Day numbers above count from this day.
    base_day: i64,
}

/// The most rows one customer keeps (their strongest): a position among a
/// customer's rows then fits 16 bits. Far beyond any shopper's distinct items.
pub(crate) const MAX_ROWS: usize = 1 << 16;

/// One of a customer's items, as a ranking reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Row {
    pub item: ItemIx,
    pub weight: f32,
    pub purchases: u32,
    /// Days since the epoch of the first and the last purchase; 0 in a row
    /// without purchases, which has neither (and [`Histories`] keeps no days
    /// for it).
    pub first_day: i64,
    pub last_day: i64,
}

impl Row {
    /// Mean days between purchases, from two purchases on.
    pub(crate) fn interval_days(&self) -> Option<f64> {
        (self.purchases >= 2 && self.last_day > self.first_day)
            .then(|| (self.last_day - self.first_day) as f64 / f64::from(self.purchases - 1))
    }

    pub(crate) fn last_micros(&self) -> i64 {
        self.last_day * MICROS_PER_DAY
    }
}

/// Where one customer's rows and purchase columns are.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    /// The customer's first row.
    start: usize,
    /// How many rows the customer has.
    len: usize,
    /// How many of them (the first ones) have purchases.
    purchased: usize,
    /// The purchase columns of the customer's first row.
    purchase_start: usize,
}

impl Span {
    fn rows(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

impl Histories {
    pub(crate) fn with_base_day(base_day: i64) -> Self {
        Histories {
            offsets: vec![0],
            purchase_offsets: vec![0],
            base_day,
            ..Histories::default()
        }
    }

    /// Appends the next customer's rows (customers come in index order, a
    /// customer's rows one per item, in any order); past [`MAX_ROWS`], only
    /// the strongest are kept.
    pub(crate) fn push_user(&mut self, rows: &[Row]) {
        let mut strongest_first: Vec<usize> = (0..rows.len()).collect();
        strongest_first.sort_unstable_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            b.weight.total_cmp(&a.weight).then(a.item.cmp(&b.item))
        });
        strongest_first.truncate(MAX_ROWS);
        // The kept rows in their stored order, and each one's new position.
        let mut kept = strongest_first.clone();
        kept.sort_unstable_by_key(|&r| (rows[r].purchases == 0, rows[r].item));
        let mut position = vec![0u16; rows.len()];
        for (at, &r) in kept.iter().enumerate() {
            position[r] = u16::try_from(at).unwrap_or(u16::MAX);
        }
        self.strength
            .extend(strongest_first.iter().map(|&r| position[r]));
        for row in kept.iter().map(|&r| &rows[r]) {
            self.items.push(row.item);
            self.weights.push(row.weight);
            if row.purchases > 0 {
                self.push_purchase(row);
            }
        }
        self.offsets.push(u32_len(self.items.len()));
        self.purchase_offsets.push(u32_len(self.purchases.len()));
    }

    fn push_purchase(&mut self, row: &Row) {
        self.purchases
            .push(u16::try_from(row.purchases).unwrap_or(u16::MAX));
        self.first_day.push(self.compact_day(row.first_day));
        self.last_day.push(self.compact_day(row.last_day));
    }

    fn compact_day(&self, day: i64) -> u16 {
        u16::try_from((day - self.base_day).clamp(0, i64::from(u16::MAX))).unwrap_or(u16::MAX)
    }

    fn day(&self, compact: u16) -> i64 {
        self.base_day + i64::from(compact)
    }

    pub(crate) fn users(&self) -> u32 {
        u32::try_from(self.offsets.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The customer's rows, sorted by item; none for an unknown customer.
    pub(crate) fn rows(&self, user: UserIx) -> impl ExactSizeIterator<Item = Row> + '_ {
        let span = self.span(user);
        ByItem {
            histories: self,
            span,
            items: &self.items[span.rows()],
            purchased: 0..span.purchased,
            unpurchased: span.purchased..span.len,
        }
    }

    /// The customer's rows, strongest first: weight descending, then the lower item.
    pub(crate) fn strongest_first(&self, user: UserIx) -> impl ExactSizeIterator<Item = Row> + '_ {
        let span = self.span(user);
        self.strength[span.rows()]
            .iter()
            .map(move |&at| self.row(&span, usize::from(at)))
    }

    /// How many rows the customer has.
    pub(crate) fn len(&self, user: UserIx) -> usize {
        self.span(user).len
    }

    /// The customer's items in two runs, each sorted: first those they bought,
    /// then the others. Position `at` is [`Histories::row_at`]`(user, at)`.
    pub(crate) fn items(&self, user: UserIx) -> &[ItemIx] {
        &self.items[self.span(user).rows()]
    }

    /// The customer's row at position `at` of [`Histories::items`].
    pub(crate) fn row_at(&self, user: UserIx, at: usize) -> Row {
        self.row(&self.span(user), at)
    }

    /// The customer's row of `item`, if any.
    pub(crate) fn find(&self, user: UserIx, item: ItemIx) -> Option<Row> {
        let span = self.span(user);
        let (purchased, unpurchased) = self.items[span.rows()].split_at(span.purchased);
        let at = match purchased.binary_search(&item) {
            Ok(at) => at,
            Err(_) => span.purchased + unpurchased.binary_search(&item).ok()?,
        };
        Some(self.row(&span, at))
    }

    fn span(&self, user: UserIx) -> Span {
        let u = user as usize;
        if u + 1 >= self.offsets.len() {
            return Span::default();
        }
        let start = self.offsets[u] as usize;
        let purchase_start = self.purchase_offsets[u] as usize;
        Span {
            start,
            len: self.offsets[u + 1] as usize - start,
            purchased: self.purchase_offsets[u + 1] as usize - purchase_start,
            purchase_start,
        }
    }

    /// The row at position `at` among the customer's.
    fn row(&self, span: &Span, at: usize) -> Row {
        let r = span.start + at;
        let mut row = Row {
            item: self.items[r],
            weight: self.weights[r],
            purchases: 0,
            first_day: 0,
            last_day: 0,
        };
        if at < span.purchased {
            let p = span.purchase_start + at;
            row.purchases = u32::from(self.purchases[p]);
            row.first_day = self.day(self.first_day[p]);
            row.last_day = self.day(self.last_day[p]);
        }
        row
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.offsets.capacity() * 4
            + self.purchase_offsets.capacity() * 4
            + self.strength.capacity() * 2
            + self.items.capacity() * 4
            + self.weights.capacity() * 4
            + self.purchases.capacity() * 2
            + self.first_day.capacity() * 2
            + self.last_day.capacity() * 2
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.offsets.shrink_to_fit();
        self.purchase_offsets.shrink_to_fit();
        self.strength.shrink_to_fit();
        self.items.shrink_to_fit();
        self.weights.shrink_to_fit();
        self.purchases.shrink_to_fit();
        self.first_day.shrink_to_fit();
        self.last_day.shrink_to_fit();
    }
}

/// A count of column entries as an offset (training keeps them within `u32`).
fn u32_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// One customer's rows in item order: its two runs (positions among its rows,
/// each sorted by item), merged.
struct ByItem<'a> {
    histories: &'a Histories,
    span: Span,
    items: &'a [ItemIx],
    purchased: std::ops::Range<usize>,
    unpurchased: std::ops::Range<usize>,
}

impl Iterator for ByItem<'_> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let unpurchased_next = self.purchased.is_empty()
            || (!self.unpurchased.is_empty()
                && self.items[self.unpurchased.start] < self.items[self.purchased.start]);
        let at = if unpurchased_next {
            self.unpurchased.next()
        } else {
            self.purchased.next()
        }?;
        Some(self.histories.row(&self.span, at))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.purchased.len() + self.unpurchased.len();
        (left, Some(left))
    }
}

impl ExactSizeIterator for ByItem<'_> {}

/// What one customer's events add up to: their rows, and the groups of items
/// that co-occurrence counts (the customer's recent items, each basket, each
/// browsing session).
#[derive(Debug, Default)]
pub(crate) struct UserSummary {
    pub rows: Vec<Row>,
    /// The customer's most recent items (at most `max_items_per_user`).
    pub recent_items: Vec<ItemIx>,
    pub baskets: Vec<Vec<ItemIx>>,
    pub sessions: Vec<Vec<ItemIx>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum BasketKey {
    Ordinal(u32),
    /// A purchase without an order ordinal: its time groups it.
    At(i64),
}

fn basket_key(event: &Interaction) -> BasketKey {
    if event.basket > 0 {
        BasketKey::Ordinal(event.basket)
    } else {
        BasketKey::At(event.time)
    }
}

/// Sums up one customer's events (sorted by time).
pub(crate) fn summarize(events: &[Interaction], config: &ModelConfig, now: i64) -> UserSummary {
    let baskets = basket_ranks(events);
    let basket_count = baskets.len();
    // TIFU-KNN: the k-th most recent basket weighs decay^k; an item's weight is
    // its share of the decayed baskets it appears in.
    let basket_weight = |rank: usize| {
        config
            .basket_decay
            .powi(i32::try_from(basket_count - 1 - rank).unwrap_or(i32::MAX))
    };
    let decayed_baskets: f32 = (0..basket_count).map(basket_weight).sum();

    let mut by_item: Vec<&Interaction> = events.iter().collect();
    by_item.sort_by_key(|e| (e.item, e.time));
    let mut rows = Vec::new();
    let mut last_seen = Vec::new();
    let mut basket_items: Vec<Vec<ItemIx>> = vec![Vec::new(); basket_count];
    for group in by_item.chunk_by(|a, b| a.item == b.item) {
        let item = group[0].item;
        let mut purchases = 0u32;
        let mut returns = 0u32;
        let mut tifu = 0.0f32;
        let mut interest = 0.0f32;
        let mut first = i64::MAX;
        let mut last = i64::MIN;
        let mut last_rank = usize::MAX;
        for event in group {
            let signals = &config.signals;
            let interest_weight = match event.signal {
                Signal::Purchase => {
                    let rank = rank_of(&baskets, basket_key(event));
                    if rank != last_rank {
                        last_rank = rank;
                        purchases += 1;
                        tifu += basket_weight(rank);
                        basket_items[rank].push(item);
                    }
                    first = first.min(event.time);
                    last = last.max(event.time);
                    0.0
                }
                Signal::Return => {
                    returns += 1;
                    0.0
                }
                Signal::View => signals.view,
                Signal::CartAdd => signals.cart_add,
                Signal::CartRemove => signals.cart_remove,
                Signal::RecommendationClick => signals.recommendation_click,
            };
            interest += interest_weight * decay(now - event.time, config.interest_half_life_days);
        }
        let kept = purchases.saturating_sub(returns);
        let purchase_share = if purchases > 0 && decayed_baskets > 0.0 {
            tifu / decayed_baskets * kept as f32 / purchases as f32
        } else {
            0.0
        };
        let weight = (config.signals.purchase * purchase_share + interest).max(0.0);
        if kept == 0 && weight <= 0.0 {
            continue;
        }
        let (first_day, last_day) = if kept > 0 {
            (day_of(first), day_of(last))
        } else {
            (0, 0)
        };
        rows.push(Row {
            item,
            weight,
            purchases: kept,
            first_day,
            last_day,
        });
        last_seen.push((group.last().map_or(0, |e| e.time), item));
    }

    last_seen.sort_unstable_by(|a, b| b.cmp(a));
    let mut recent_items: Vec<ItemIx> = last_seen
        .iter()
        .take(config.max_items_per_user)
        .map(|&(_, item)| item)
        .collect();
    recent_items.sort_unstable();
    for basket in &mut basket_items {
        basket.truncate(config.max_items_per_user);
    }
    UserSummary {
        rows,
        recent_items,
        baskets: basket_items,
        sessions: view_sessions(events, config),
    }
}

/// The customer's baskets, oldest first: (key, rank) sorted by key.
fn basket_ranks(events: &[Interaction]) -> Vec<(BasketKey, usize)> {
    let mut firsts: Vec<(BasketKey, i64)> = events
        .iter()
        .filter(|e| e.signal == Signal::Purchase)
        .map(|e| (basket_key(e), e.time))
        .collect();
    firsts.sort_unstable();
    firsts.dedup_by_key(|(key, _)| *key);
    firsts.sort_unstable_by_key(|&(key, time)| (time, key));
    let mut ranks: Vec<(BasketKey, usize)> = firsts
        .into_iter()
        .enumerate()
        .map(|(rank, (key, _))| (key, rank))
        .collect();
    ranks.sort_unstable();
    ranks
}

fn rank_of(ranks: &[(BasketKey, usize)], key: BasketKey) -> usize {
    let at = ranks.partition_point(|(k, _)| *k < key);
    ranks[at].1
}

/// Views split where the customer paused longer than the session gap.
fn view_sessions(events: &[Interaction], config: &ModelConfig) -> Vec<Vec<ItemIx>> {
    let gap = i64::from(config.session_gap_minutes) * 60 * 1_000_000;
    let mut sessions = Vec::new();
    let mut current: Vec<ItemIx> = Vec::new();
    let mut last = i64::MIN;
    for event in events.iter().filter(|e| e.signal == Signal::View) {
        if !current.is_empty() && event.time.saturating_sub(last) > gap {
            sessions.push(std::mem::take(&mut current));
        }
        current.push(event.item);
        last = event.time;
    }
    sessions.push(current);
    sessions.retain_mut(|session| {
        session.sort_unstable();
        session.dedup();
        session.truncate(config.max_items_per_user);
        session.len() > 1
    });
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> i64 {
        day * MICROS_PER_DAY
    }

    fn purchase(item: ItemIx, day: i64, basket: u32) -> Interaction {
        Interaction {
            user: 0,
            item,
            signal: Signal::Purchase,
            time: at(day),
            basket,
            quantity: 1,
        }
    }

    fn event(item: ItemIx, signal: Signal, minute: i64) -> Interaction {
        Interaction {
            user: 0,
            item,
            signal,
            time: at(100) + minute * 60 * 1_000_000,
            basket: 0,
            quantity: 1,
        }
    }

    #[test]
    fn past_the_row_cap_a_customer_keeps_their_strongest_rows_in_item_order() {
        let n = MAX_ROWS + 10;
        // Item i weighs (i % 7) + 1: the weakest rows are those of weight 1.
        let rows: Vec<Row> = (0..n)
            .map(|i| Row {
                item: ItemIx::try_from(i).unwrap(),
                weight: (i % 7) as f32 + 1.0,
                purchases: 0,
                first_day: 0,
                last_day: 0,
            })
            .collect();
        let mut histories = Histories::with_base_day(0);
        histories.push_user(&rows[..3]);
        histories.push_user(&rows);
        assert_eq!(histories.len(0), 3);
        assert_eq!(histories.len(1), MAX_ROWS);
        let items = histories.items(1);
        assert!(items.windows(2).all(|w| w[0] < w[1]), "sorted by item");
        // Ten of the weight-1 rows went: the highest items among them.
        let dropped: Vec<ItemIx> = (0..n)
            .map(|i| ItemIx::try_from(i).unwrap())
            .filter(|item| items.binary_search(item).is_err())
            .collect();
        assert_eq!(dropped.len(), 10);
        assert!(dropped.iter().all(|&item| item % 7 == 0));
        let strongest: Vec<Row> = histories.strongest_first(1).take(3).collect();
        assert!(strongest.iter().all(|row| row.weight == 7.0));
        assert_eq!(strongest[0].item, 6);
        let weakest = histories.strongest_first(1).last().unwrap();
        assert_eq!(weakest.weight, 1.0);
        assert_eq!(histories.find(1, 6).map(|row| row.weight), Some(7.0));
        assert_eq!(histories.strongest_first(0).count(), 3);
    }

    #[test]
    fn recent_baskets_weigh_more_and_cadence_is_kept() {
        let config = ModelConfig {
            basket_decay: 0.5,
            ..ModelConfig::default()
        };
        // Item 1 in every basket (days 0, 10, 20); item 2 only in the first one.
        let events = [
            purchase(1, 0, 1),
            purchase(2, 0, 1),
            purchase(1, 10, 2),
            purchase(1, 20, 3),
        ];
        let summary = summarize(&events, &config, at(20));
        let one = summary
            .rows
            .iter()
            .find(|r| r.item == 1)
            .expect("item 1 kept");
        let two = summary
            .rows
            .iter()
            .find(|r| r.item == 2)
            .expect("item 2 kept");
        assert_eq!(one.purchases, 3);
        assert_eq!(one.interval_days(), Some(10.0));
        assert_eq!(two.interval_days(), None);
        // Decayed baskets: 0.25 + 0.5 + 1 = 1.75; item 2 only in the 0.25 one.
        assert!((one.weight - 5.0).abs() < 1e-5);
        assert!((two.weight - 5.0 * 0.25 / 1.75).abs() < 1e-5);
        assert_eq!(summary.baskets, vec![vec![1, 2], vec![1], vec![1]]);
    }

    #[test]
    fn a_return_cancels_its_purchase() {
        let mut returned = purchase(3, 1, 0);
        returned.signal = Signal::Return;
        let events = [purchase(3, 0, 0), returned];
        let summary = summarize(&events, &ModelConfig::default(), at(1));
        assert!(summary.rows.is_empty());
    }

    #[test]
    fn views_make_interest_and_sessions_split_at_pauses() {
        let events = [
            event(1, Signal::View, 0),
            event(2, Signal::View, 5),
            event(3, Signal::View, 100),
            event(4, Signal::View, 101),
            event(4, Signal::CartRemove, 102),
        ];
        let summary = summarize(&events, &ModelConfig::default(), at(100));
        assert_eq!(summary.sessions, vec![vec![1, 2], vec![3, 4]]);
        // Item 4: viewed (1.0) then taken out of the cart (-1.5): no interest left.
        let items: Vec<ItemIx> = summary.rows.iter().map(|r| r.item).collect();
        assert_eq!(items, vec![1, 2, 3]);
        assert!(
            summary
                .rows
                .iter()
                .all(|r| (r.first_day, r.last_day) == (0, 0)),
            "no purchase, no purchase days"
        );
    }

    #[test]
    fn histories_answer_per_customer() {
        let mut histories = Histories::with_base_day(10);
        let row = Row {
            item: 7,
            weight: 1.0,
            purchases: 2,
            first_day: 10,
            last_day: 14,
        };
        let weaker = Row {
            item: 3,
            weight: 0.5,
            ..row
        };
        let tied = Row { item: 9, ..row };
        histories.push_user(&[]);
        histories.push_user(&[weaker, row, tied]);
        assert_eq!(histories.users(), 2);
        assert_eq!(histories.rows(0).len(), 0);
        assert_eq!(
            histories.rows(1).collect::<Vec<_>>(),
            vec![weaker, row, tied]
        );
        assert_eq!(
            histories.strongest_first(1).collect::<Vec<_>>(),
            vec![row, tied, weaker],
            "by weight, then the lower item"
        );
        assert_eq!(histories.items(1), &[3, 7, 9]);
        assert_eq!(histories.row_at(1, 2), tied);
        assert_eq!(histories.len(1), 3);
        assert_eq!(histories.find(1, 9), Some(tied));
        assert_eq!(histories.rows(5).len(), 0);
        assert_eq!(histories.strongest_first(5).len(), 0);
    }

    fn bought(item: ItemIx, weight: f32, purchases: u32, days: (i64, i64)) -> Row {
        Row {
            item,
            weight,
            purchases,
            first_day: days.0,
            last_day: days.1,
        }
    }

    fn seen(item: ItemIx, weight: f32) -> Row {
        Row {
            item,
            weight,
            purchases: 0,
            first_day: 0,
            last_day: 0,
        }
    }

    /// Checks every way of reading `user` against `rows`, what was pushed for
    /// them (sorted by item).
    fn assert_answers(histories: &Histories, user: UserIx, rows: &[Row]) {
        assert_eq!(histories.len(user), rows.len());
        assert_eq!(histories.rows(user).len(), rows.len());
        assert_eq!(histories.rows(user).collect::<Vec<_>>(), rows, "by item");
        let mut strongest = rows.to_vec();
        strongest.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.item.cmp(&b.item)));
        assert_eq!(
            histories.strongest_first(user).collect::<Vec<_>>(),
            strongest
        );
        for row in rows {
            assert_eq!(histories.find(user, row.item), Some(*row));
        }
        let bought_then_seen: Vec<ItemIx> = rows
            .iter()
            .filter(|r| r.purchases > 0)
            .chain(rows.iter().filter(|r| r.purchases == 0))
            .map(|r| r.item)
            .collect();
        assert_eq!(histories.items(user), bought_then_seen);
        for (at, &item) in histories.items(user).iter().enumerate() {
            assert_eq!(histories.row_at(user, at).item, item);
        }
    }

    #[test]
    fn bought_and_only_seen_rows_answer_alike() {
        let mixed = [
            seen(2, 3.0),
            bought(4, 1.0, 3, (12, 30)),
            seen(5, 1.0),
            bought(7, 3.0, 1, (20, 20)),
            seen(9, 0.5),
            bought(11, 2.0, 2, (15, 25)),
        ];
        let only_bought = [bought(1, 0.5, 1, (10, 10)), bought(3, 4.0, 5, (11, 70))];
        let only_seen = [seen(0, 1.0), seen(6, 2.0), seen(8, 1.0)];
        let mut histories = Histories::with_base_day(10);
        // Any order in: the rows come out the same.
        histories.push_user(&mixed.iter().rev().copied().collect::<Vec<_>>());
        histories.push_user(&[]);
        histories.push_user(&only_bought);
        histories.push_user(&only_seen);
        histories.push_user(&mixed);

        assert_eq!(histories.users(), 5);
        assert_answers(&histories, 0, &mixed);
        assert_answers(&histories, 1, &[]);
        assert_answers(&histories, 2, &only_bought);
        assert_answers(&histories, 3, &only_seen);
        assert_answers(&histories, 4, &mixed);
        assert_answers(&histories, 5, &[]);

        assert_eq!(histories.items(0), &[4, 7, 11, 2, 5, 9]);
        assert_eq!(
            histories
                .strongest_first(0)
                .map(|r| r.item)
                .collect::<Vec<_>>(),
            vec![2, 7, 11, 4, 5, 9],
            "ties across runs go to the lower item"
        );
        let viewed = histories.find(0, 5).expect("item 5 seen");
        assert_eq!(
            (viewed.purchases, viewed.first_day, viewed.last_day),
            (0, 0, 0)
        );
        assert_eq!(
            histories.find(0, 4).and_then(|r| r.interval_days()),
            Some(9.0)
        );
        for missing in [0, 1, 3, 6, 8, 10, 12] {
            assert_eq!(histories.find(0, missing), None, "item {missing}");
        }
        assert_eq!(histories.find(1, 2), None);
        assert_eq!(histories.find(3, 3), None, "customer 2's item");
    }

    #[test]
    fn rows_without_purchases_store_no_purchase_columns() {
        let mut histories = Histories::with_base_day(0);
        histories.push_user(&[
            bought(1, 1.0, 1, (0, 0)),
            seen(2, 1.0),
            bought(3, 1.0, 2, (0, 5)),
            seen(4, 0.5),
            seen(5, 0.5),
            seen(6, 0.5),
        ]);
        histories.push_user(&[]);
        histories.push_user(&[seen(1, 1.0), seen(2, 2.0), seen(3, 3.0)]);
        histories.shrink_to_fit();
        // Two 4-byte offsets per customer and one more each; 16 bytes per row
        // with purchases, 10 per row without (was 16 for every row).
        let (customers, rows_bought, rows_seen) = (3, 2, 7);
        assert_eq!(
            histories.memory_bytes(),
            2 * 4 * (customers + 1) + 16 * rows_bought + 10 * rows_seen
        );
        assert_eq!(histories.memory_bytes(), 134);
    }
}
