use super::*;
use crate::model::{ItemFacts, Signal};

const DAY: i64 = MICROS_PER_DAY;
const NOW: i64 = 20_000 * DAY;

fn catalogue(n: usize) -> Vec<ItemFacts> {
    (0..n)
        .map(|_| ItemFacts {
            active: true,
            ..ItemFacts::default()
        })
        .collect()
}

fn event(user: UserIx, item: ItemIx, signal: Signal, time: i64, basket: u32) -> Interaction {
    Interaction {
        user,
        item,
        signal,
        time,
        basket,
        quantity: 1,
    }
}

fn buy(user: UserIx, items: &[ItemIx], day: i64, basket: u32) -> Vec<Interaction> {
    items
        .iter()
        .map(|&item| event(user, item, Signal::Purchase, NOW - day * DAY, basket))
        .collect()
}

fn train(users: u32, items: Vec<ItemFacts>, interactions: Vec<Interaction>) -> Models {
    let data = TrainingData {
        users,
        items,
        interactions,
        now: NOW,
    };
    Models::train(&data, &ModelConfig::default()).expect("valid data trains")
}

fn none(_: ItemIx) -> bool {
    false
}

fn items_of(scored: &[Scored]) -> Vec<ItemIx> {
    scored.iter().map(|s| s.item).collect()
}

#[test]
fn popularity_decays_and_is_kept_per_category() {
    let mut items = catalogue(4);
    items[0].categories = vec![0, 1];
    items[1].categories = vec![0, 2];
    items[2].categories = vec![0, 1];
    items[3].active = false;
    let mut interactions = Vec::new();
    // Item 0: ten purchases a year ago; item 1: three this week; item 2: one today.
    for u in 0..10 {
        interactions.extend(buy(u, &[0], 365, 1));
    }
    for u in 0..3 {
        interactions.extend(buy(u, &[1], 3, 2));
    }
    interactions.extend(buy(0, &[2], 0, 3));
    interactions.extend(buy(1, &[3], 0, 3));
    let models = train(10, items, interactions);
    let global = models.popular(None, 10, &none);
    assert_eq!(
        items_of(&global),
        vec![1, 2, 0],
        "the inactive item 3 never shows"
    );
    assert_eq!(global[0].because, Because::Popular);
    assert!((global[0].score - 1.0).abs() < 1e-6);
    let in_one = models.popular(Some(1), 10, &none);
    assert_eq!(items_of(&in_one), vec![2, 0]);
    assert_eq!(in_one[0].because, Because::PopularIn(1));
    assert_eq!(items_of(&models.popular(None, 10, &|i| i == 1)), vec![2, 0]);
    assert!(models.popular(Some(7), 10, &none).is_empty());
}

#[test]
fn buy_again_knows_frequency_cadence_and_the_next_date() {
    let mut interactions = Vec::new();
    // Milk every 7 days (4 times), coffee twice, a lamp once long ago.
    for (basket, day) in [(1, 21), (2, 14), (3, 7), (4, 0)] {
        interactions.extend(buy(0, &[0], day, basket));
    }
    interactions.extend(buy(0, &[1], 14, 2));
    interactions.extend(buy(0, &[1], 0, 4));
    interactions.extend(buy(0, &[2], 21, 1));
    let models = train(2, catalogue(3), interactions);
    let again = models.buy_again(0, NOW, 10, &none);
    assert_eq!(
        again.iter().map(|b| b.item).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let milk = again[0];
    assert_eq!(milk.purchases, 4);
    assert_eq!(milk.interval, Some(7 * DAY));
    assert_eq!(milk.last, NOW);
    assert_eq!(milk.expected_next, Some(NOW + 7 * DAY));
    assert_eq!(again[2].interval, None);
    assert_eq!(again[2].expected_next, None);
    assert!(models.buy_again(1, NOW, 10, &none).is_empty());
    assert!(models.buy_again(99, NOW, 10, &none).is_empty());
    assert_eq!(models.buy_again(0, NOW, 1, &|i| i == 0)[0].item, 1);
}

#[test]
fn a_due_floor_damps_what_is_not_yet_due() {
    let mut interactions = Vec::new();
    for (basket, day) in [(1, 40), (2, 30), (3, 20), (4, 10)] {
        interactions.extend(buy(0, &[0], day, basket));
    }
    // Item 1: bought every 30 days, last 30 days ago, so due now.
    interactions.extend(buy(0, &[1], 60, 5));
    interactions.extend(buy(0, &[1], 30, 6));
    let data = TrainingData {
        users: 1,
        items: catalogue(2),
        interactions,
        now: NOW,
    };
    let config = ModelConfig {
        due_floor: 0.1,
        basket_decay: 1.0,
        ..ModelConfig::default()
    };
    let models = Models::train(&data, &config).expect("valid data trains");
    // Without basket decay item 0 weighs 4/6, item 1 2/6. Asked 7 days before NOW,
    // item 0 (every 10 days, last 3 days before) scores 0.3 * 4/6, item 1 (every
    // 30 days, last 23 days before) 23/30 * 2/6.
    let again = models.buy_again(0, NOW - 7 * DAY, 2, &none);
    assert_eq!(again[0].item, 1);
    assert_eq!(again[1].item, 0);
}

#[test]
fn bought_together_is_normalized_against_best_sellers() {
    // Chips go with salsa; bread (9) is in every basket.
    let mut interactions = Vec::new();
    for u in 0..3 {
        interactions.extend(buy(u, &[0, 1, 9], 1, 1));
    }
    for u in 3..20 {
        interactions.extend(buy(u, &[u % 5 + 2, 9], 1, 1));
    }
    interactions.extend(buy(20, &[0, 9], 1, 1));
    let models = train(21, catalogue(10), interactions);
    let together = models.bought_together(&[0], 3, &none);
    assert_eq!(together[0].item, 1);
    assert_eq!(together[0].because, Because::BoughtTogether(0));
    assert!(
        models
            .bought_together(&[0, 1], 5, &none)
            .iter()
            .all(|s| s.item > 1)
    );
    assert!(models.bought_together(&[0], 3, &|i| i == 1)[0].item == 9);
}

#[test]
fn viewed_together_follows_browsing_sessions() {
    let t = NOW - DAY;
    let minute = 60 * 1_000_000;
    let mut interactions = Vec::new();
    for u in 0..3 {
        interactions.push(event(u, 0, Signal::View, t, 0));
        interactions.push(event(u, 1, Signal::View, t + minute, 0));
        // Hours later, another session.
        interactions.push(event(u, 2, Signal::View, t + 300 * minute, 0));
    }
    let models = train(3, catalogue(3), interactions);
    let viewed = models.viewed_together(&[0], 5, &none);
    assert_eq!(items_of(&viewed), vec![1]);
    assert_eq!(viewed[0].because, Because::ViewedTogether(0));
}

/// Customers 0..4 buy 0, 1 and 2 together, 0..2 later item 3 too; customer 5
/// bought 0 and 1 only.
fn neighbourhood() -> Models {
    let mut interactions = Vec::new();
    for u in 0..5 {
        interactions.extend(buy(u, &[0, 1, 2], 10, 1));
    }
    for u in 0..3 {
        interactions.extend(buy(u, &[3], 5, 2));
    }
    interactions.extend(buy(5, &[0, 1], 2, 1));
    interactions.extend(buy(5, &[0], 1, 2));
    train(7, catalogue(6), interactions)
}

#[test]
fn next_basket_puts_own_items_first_then_neighbours() {
    let models = neighbourhood();
    let ranked = models.recommend(Some(5), &[], Task::NextBasket, NOW, 4, &none);
    assert_eq!(items_of(&ranked), vec![0, 1, 2, 3]);
    assert_eq!(ranked[0].because, Because::OwnHistory { purchases: 2 });
    assert_eq!(ranked[1].because, Because::OwnHistory { purchases: 1 });
    assert!(matches!(ranked[2].because, Because::SimilarTo(0 | 1)));
    assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn discovery_never_returns_what_the_customer_bought() {
    let models = neighbourhood();
    let ranked = models.recommend(Some(5), &[], Task::Discovery, NOW, 10, &none);
    assert_eq!(ranked[0].item, 2, "bought with both of customer 5's items");
    assert!(ranked.iter().all(|s| s.item != 0 && s.item != 1));
    // Items 4 and 5 were never bought, so popularity cannot fill with them.
    assert_eq!(items_of(&ranked), vec![2, 3]);
}

#[test]
fn an_unknown_customer_gets_popular_items_and_a_recent_item_counts_at_once() {
    let models = neighbourhood();
    let cold = models.recommend(None, &[], Task::NextBasket, NOW, 2, &none);
    assert!(cold.iter().all(|s| s.because == Because::Popular));
    assert_eq!(items_of(&cold), items_of(&models.popular(None, 2, &none)));
    // A visitor just viewed item 3: item 3 first, then what goes with it.
    let warm = models.recommend(None, &[(3, 1.0)], Task::NextBasket, NOW, 3, &none);
    assert_eq!(warm[0].item, 3);
    assert_eq!(warm[0].because, Because::Personal);
    assert!(matches!(warm[1].because, Because::SimilarTo(3)));
    let excluded = models.recommend(None, &[(3, 1.0)], Task::NextBasket, NOW, 3, &|i| i == 3);
    assert!(excluded.iter().all(|s| s.item != 3));
    // Beyond the catalogue or without weight, a recent item is ignored.
    assert_eq!(
        items_of(&models.recommend(
            None,
            &[(77, 1.0), (3, 0.0)],
            Task::NextBasket,
            NOW,
            2,
            &none
        )),
        items_of(&cold)
    );
}

#[test]
fn score_reranks_the_callers_candidates_with_the_same_blend() {
    let models = neighbourhood();
    let scored = models.score(Some(5), &[], NOW, &[4, 2, 0, 2, 99]);
    assert_eq!(items_of(&scored), vec![0, 2, 4, 99]);
    let ranked = models.recommend(Some(5), &[], Task::NextBasket, NOW, 3, &none);
    assert_eq!(scored[0], ranked[0]);
    assert!(models.score(None, &[], NOW, &[]).is_empty());
}

#[test]
fn content_matches_affinities_and_favours_new_items_among_equals() {
    let mut items = catalogue(5);
    for (i, facts) in items.iter_mut().enumerate() {
        facts.categories = vec![0, if i < 3 { 1 } else { 2 }];
        facts.brand = Some(if i % 2 == 0 { 0 } else { 1 });
    }
    items[2].launch = Some(NOW - DAY);
    let models = train(1, items, Vec::new());
    let ranked = models.content(&[(1, 1.0)], &[(0, 0.5)], 10, &none);
    // Category 1 and brand 0: items 0 and 2 (2 is new); then 1; then 4 (brand only).
    assert_eq!(items_of(&ranked), vec![2, 0, 1, 4]);
    assert_eq!(
        ranked[0].because,
        Because::Content {
            category: Some(1),
            brand: Some(0)
        }
    );
    assert!(models.content(&[], &[], 10, &none).is_empty());
}

#[test]
fn training_refuses_unknown_indexes_and_bad_knobs() {
    let data = TrainingData {
        users: 1,
        items: catalogue(1),
        interactions: buy(1, &[0], 0, 1),
        now: NOW,
    };
    assert!(Models::train(&data, &ModelConfig::default()).is_err());
    let config = ModelConfig {
        basket_decay: 0.0,
        ..ModelConfig::default()
    };
    let ok = TrainingData { users: 2, ..data };
    assert!(Models::train(&ok, &config).is_err());
    assert!(Models::train(&ok, &ModelConfig::default()).is_ok());
}

#[test]
fn a_snapshot_names_itself_and_knows_its_size() {
    let models = neighbourhood();
    assert!(
        models
            .version()
            .starts_with("tifu-ease-2024-10-04T00:00:00Z-")
    );
    assert_eq!(models.users(), 7);
    assert_eq!(models.items(), 6);
    assert!(models.memory_bytes() > 0);
    let empty = train(0, Vec::new(), Vec::new());
    assert!(
        empty
            .recommend(None, &[], Task::Discovery, NOW, 5, &none)
            .is_empty()
    );
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Models>();
}
