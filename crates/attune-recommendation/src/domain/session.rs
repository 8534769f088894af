//! A customer's (or anonymous visitor's) session state: what they looked at,
//! what is in their cart, what they searched and bought lately. Folded event by
//! event as the feed arrives, so the next answer reflects the last event before
//! any retraining.

use serde::{Deserialize, Serialize};

use super::Signal;

/// How many recent items of each kind a session keeps.
const RECENT: usize = 20;
/// How many recent searches a session keeps.
const SEARCHES: usize = 10;

/// The session state, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Recently viewed (or clicked) items, newest first, no duplicates: (item, micros).
    pub viewed: Vec<(String, i64)>,
    /// The open cart: (item, quantity), in the order added.
    pub cart: Vec<(String, u32)>,
    /// When the cart last changed (micros); 0 when never.
    pub cart_time: i64,
    /// Recently bought items, newest first, no duplicates: (item, micros).
    pub bought: Vec<(String, i64)>,
    /// Recent searches, newest first: (query, micros).
    pub searches: Vec<(String, i64)>,
    /// The last activity of any kind (micros).
    pub last_activity: i64,
}

/// One change to fold into a session.
#[derive(Debug, Clone)]
pub enum SessionChange {
    /// An item signal (view, cart add or remove, purchase, click).
    Item {
        signal: Signal,
        item_id: String,
        quantity: u32,
        at: i64,
    },
    /// A purchase completed (empties the cart, as profile's open cart does).
    OrderPlaced { at: i64 },
    /// A search.
    Search { query: String, at: i64 },
}

fn remember(list: &mut Vec<(String, i64)>, key: &str, at: i64, bound: usize) {
    list.retain(|(existing, _)| existing != key);
    list.insert(0, (key.to_owned(), at));
    list.truncate(bound);
}

impl Session {
    /// Folds `change` in.
    pub fn apply(&mut self, change: &SessionChange) {
        match change {
            SessionChange::Item {
                signal,
                item_id,
                quantity,
                at,
            } => {
                match signal {
                    Signal::View | Signal::RecommendationClick => {
                        remember(&mut self.viewed, item_id, *at, RECENT);
                    }
                    Signal::CartAdd => {
                        match self.cart.iter_mut().find(|(item, _)| item == item_id) {
                            Some((_, units)) => *units = units.saturating_add(*quantity),
                            None => self.cart.push((item_id.clone(), *quantity)),
                        }
                        self.cart_time = self.cart_time.max(*at);
                    }
                    Signal::CartRemove => {
                        if let Some(position) =
                            self.cart.iter().position(|(item, _)| item == item_id)
                        {
                            let units = &mut self.cart[position].1;
                            *units = units.saturating_sub(*quantity);
                            if *units == 0 {
                                self.cart.remove(position);
                            }
                        }
                        self.cart_time = self.cart_time.max(*at);
                    }
                    Signal::Purchase => remember(&mut self.bought, item_id, *at, RECENT),
                }
                self.last_activity = self.last_activity.max(*at);
            }
            SessionChange::OrderPlaced { at } => {
                self.cart.clear();
                self.cart_time = self.cart_time.max(*at);
                self.last_activity = self.last_activity.max(*at);
            }
            SessionChange::Search { query, at } => {
                remember(&mut self.searches, query, *at, SEARCHES);
                self.last_activity = self.last_activity.max(*at);
            }
        }
    }

    /// Moves `other` (a merged visitor's session) into this one: items and
    /// searches are interleaved by time, the cart adds up.
    pub fn absorb(&mut self, other: Session) {
        for (item, at) in other.viewed.into_iter().rev() {
            if !self.viewed.iter().any(|(existing, _)| *existing == item) {
                self.viewed.push((item, at));
            }
        }
        self.viewed.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        self.viewed.truncate(RECENT);
        for (item, at) in other.bought {
            if !self.bought.iter().any(|(existing, _)| *existing == item) {
                self.bought.push((item, at));
            }
        }
        self.bought.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        self.bought.truncate(RECENT);
        self.searches.extend(other.searches);
        self.searches
            .sort_by_key(|entry| std::cmp::Reverse(entry.1));
        self.searches.truncate(SEARCHES);
        for (item, units) in other.cart {
            match self.cart.iter_mut().find(|(existing, _)| *existing == item) {
                Some((_, mine)) => *mine = mine.saturating_add(units),
                None => self.cart.push((item, units)),
            }
        }
        self.cart_time = self.cart_time.max(other.cart_time);
        self.last_activity = self.last_activity.max(other.last_activity);
    }

    /// The session's items with the weight each steers the next answer by,
    /// newer counting more. The ids are borrowed: answers read this on every
    /// call and only look the ids up.
    pub fn recent_items(&self) -> Vec<(&str, f32)> {
        let mut items: Vec<(&str, f32)> = Vec::new();
        fn add<'a>(items: &mut Vec<(&'a str, f32)>, item: &'a str, weight: f32) {
            match items.iter_mut().find(|(i, _)| *i == item) {
                Some((_, w)) => *w += weight,
                None => items.push((item, weight)),
            }
        }
        for (rank, (item, _)) in self.viewed.iter().enumerate() {
            add(
                &mut items,
                item,
                Signal::View.session_weight() / (1.0 + rank as f32 * 0.2),
            );
        }
        for (item, _) in &self.cart {
            add(&mut items, item, Signal::CartAdd.session_weight());
        }
        for (rank, (item, _)) in self.bought.iter().enumerate() {
            add(
                &mut items,
                item,
                Signal::Purchase.session_weight() / (1.0 + rank as f32 * 0.2),
            );
        }
        items
    }

    /// Whether the session holds nothing.
    pub fn is_empty(&self) -> bool {
        self.viewed.is_empty()
            && self.cart.is_empty()
            && self.bought.is_empty()
            && self.searches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(signal: Signal, item_id: &str, quantity: u32, at: i64) -> SessionChange {
        SessionChange::Item {
            signal,
            item_id: item_id.to_owned(),
            quantity,
            at,
        }
    }

    #[test]
    fn a_cart_remove_takes_units_off_and_a_purchase_empties_the_cart() {
        let mut session = Session::default();
        session.apply(&item(Signal::CartAdd, "a", 2, 1));
        session.apply(&item(Signal::CartAdd, "b", 1, 2));
        session.apply(&item(Signal::CartRemove, "a", 1, 3));
        assert_eq!(session.cart, vec![("a".into(), 1), ("b".into(), 1)]);
        session.apply(&item(Signal::CartRemove, "b", 1, 4));
        assert_eq!(session.cart, vec![("a".into(), 1)]);
        session.apply(&SessionChange::OrderPlaced { at: 5 });
        assert!(session.cart.is_empty());
        assert_eq!(session.cart_time, 5);
    }

    #[test]
    fn a_view_again_moves_the_item_to_the_front_once() {
        let mut session = Session::default();
        session.apply(&item(Signal::View, "a", 1, 1));
        session.apply(&item(Signal::View, "b", 1, 2));
        session.apply(&item(Signal::View, "a", 1, 3));
        assert_eq!(session.viewed, vec![("a".into(), 3), ("b".into(), 2)]);
    }

    #[test]
    fn absorbing_a_visitor_keeps_the_newest_first_and_adds_carts() {
        let mut customer = Session::default();
        customer.apply(&item(Signal::View, "a", 1, 5));
        customer.apply(&item(Signal::CartAdd, "c", 1, 5));
        let mut visitor = Session::default();
        visitor.apply(&item(Signal::View, "b", 1, 9));
        visitor.apply(&item(Signal::CartAdd, "c", 2, 9));
        customer.absorb(visitor);
        assert_eq!(customer.viewed, vec![("b".into(), 9), ("a".into(), 5)]);
        assert_eq!(customer.cart, vec![("c".into(), 3)]);
        assert_eq!(customer.last_activity, 9);
    }
}
