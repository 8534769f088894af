//! The interactions `attune eval` reads: a CSV of order lines (user, item, a
//! timestamp or an order sequence, optionally a basket id), grouped into each
//! user's baskets in time order, and split by time.

use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{Context, bail};
use attune_recommendation::model::{Interaction, ItemFacts, ItemIx, Signal, TrainingData, UserIx};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// One order: when, and its distinct items (sorted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basket {
    /// Microseconds since the epoch.
    pub time: i64,
    pub items: Vec<ItemIx>,
}

/// Every user's baskets, oldest first.
#[derive(Debug, Default)]
pub struct Dataset {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub baskets: Vec<Vec<Basket>>,
    pub lines: usize,
}

#[derive(Clone, Copy, Debug)]
enum TimeColumn {
    /// Seconds since the epoch, or an RFC 3339 time.
    Timestamp(usize),
    /// The user's order number: order `n` is placed on day `n`.
    Sequence(usize),
}

struct Columns {
    user: usize,
    item: usize,
    time: TimeColumn,
    basket: Option<usize>,
    width: usize,
}

const USER: &[&str] = &["user", "user_id", "customer", "customer_id"];
const ITEM: &[&str] = &["item", "item_id", "product", "product_id"];
const TIMESTAMP: &[&str] = &["timestamp", "time"];
const SEQUENCE: &[&str] = &["sequence", "order_number", "order_sequence"];
const BASKET: &[&str] = &["basket", "basket_id", "order", "order_id"];

impl Columns {
    fn from_header(header: &str) -> anyhow::Result<Columns> {
        let names: Vec<String> = split(header)
            .iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        let find = |aliases: &[&str]| names.iter().position(|n| aliases.contains(&n.as_str()));
        let expected = "the header must name a user column (user), an item column (item), \
                        a timestamp (timestamp: seconds since the epoch or RFC 3339) or an order \
                        sequence (sequence), and optionally a basket id (basket)";
        let (Some(user), Some(item)) = (find(USER), find(ITEM)) else {
            bail!("{expected}");
        };
        let time = match (find(TIMESTAMP), find(SEQUENCE)) {
            (Some(column), _) => TimeColumn::Timestamp(column),
            (None, Some(column)) => TimeColumn::Sequence(column),
            (None, None) => bail!("{expected}"),
        };
        Ok(Columns {
            user,
            item,
            time,
            basket: find(BASKET),
            width: names.len(),
        })
    }
}

/// Fields of one CSV line; quotes around a field are dropped (ids and times
/// hold no commas).
fn split(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|field| field.trim().trim_matches('"'))
        .collect()
}

fn parse_time(field: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = field.parse::<i64>() {
        return seconds
            .checked_mul(MICROS_PER_SECOND)
            .context("timestamp out of range");
    }
    if let Ok(seconds) = field.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok((seconds * MICROS_PER_SECOND as f64).round() as i64);
    }
    let time = chrono::DateTime::parse_from_rfc3339(field)
        .with_context(|| format!("{field:?} is neither seconds since the epoch nor RFC 3339"))?;
    Ok(time.timestamp_micros())
}

/// Interns labels as dense indexes, in order of first appearance.
#[derive(Default)]
struct Labels {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Labels {
    fn intern(&mut self, label: &str) -> anyhow::Result<u32> {
        if let Some(&ix) = self.index.get(label) {
            return Ok(ix);
        }
        let ix = u32::try_from(self.names.len()).context("too many distinct ids")?;
        self.index.insert(label.to_owned(), ix);
        self.names.push(label.to_owned());
        Ok(ix)
    }
}

impl Dataset {
    pub fn read(input: impl BufRead) -> anyhow::Result<Dataset> {
        let mut lines = input.lines();
        let header = lines.next().context("the input is empty")??;
        let columns = Columns::from_header(&header)?;
        let mut users = Labels::default();
        let mut items = Labels::default();
        // (user, basket key) -> index into `baskets` with the basket's user.
        let mut keys: HashMap<(u32, String), usize> = HashMap::new();
        let mut baskets: Vec<(u32, Basket)> = Vec::new();
        let mut count = 0;
        for (number, line) in lines.enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("line {}", number + 2);
            let fields = split(&line);
            if fields.len() < columns.width {
                bail!(
                    "{}: {} fields, the header has {}",
                    at(),
                    fields.len(),
                    columns.width
                );
            }
            let (user_label, item_label) = (fields[columns.user], fields[columns.item]);
            if user_label.is_empty() || item_label.is_empty() {
                bail!("{}: the user and the item must not be empty", at());
            }
            let user = users.intern(user_label)?;
            let item = items.intern(item_label)?;
            let (time, time_key) = match columns.time {
                TimeColumn::Timestamp(c) => (parse_time(fields[c]).with_context(at)?, fields[c]),
                TimeColumn::Sequence(c) => {
                    let sequence: i64 = fields[c].parse().with_context(|| {
                        format!("{}: the order sequence must be an integer", at())
                    })?;
                    (sequence.saturating_mul(MICROS_PER_DAY), fields[c])
                }
            };
            let key = columns.basket.map_or(time_key, |c| fields[c]).to_owned();
            let slot = *keys.entry((user, key)).or_insert_with(|| {
                baskets.push((
                    user,
                    Basket {
                        time,
                        items: Vec::new(),
                    },
                ));
                baskets.len() - 1
            });
            let basket = &mut baskets[slot].1;
            basket.time = basket.time.min(time);
            basket.items.push(item);
            count += 1;
        }
        let mut by_user: Vec<Vec<Basket>> = vec![Vec::new(); users.names.len()];
        for (user, mut basket) in baskets {
            basket.items.sort_unstable();
            basket.items.dedup();
            by_user[user as usize].push(basket);
        }
        for user_baskets in &mut by_user {
            // Stable: baskets at the same time keep the file's order.
            user_baskets.sort_by_key(|b| b.time);
        }
        Ok(Dataset {
            users: users.names,
            items: items.names,
            baskets: by_user,
            lines: count,
        })
    }

    pub fn basket_count(&self) -> usize {
        self.baskets.iter().map(Vec::len).sum()
    }

    /// Trains on every user's baskets but the last `held_out`, and asks for the
    /// first held-out one (1: the test; 2: the basket before it, for tuning only).
    pub fn split(&self, held_out: usize) -> Split {
        let mut interactions = Vec::new();
        let mut cases = Vec::new();
        let mut now = i64::MIN;
        for (user, baskets) in self.baskets.iter().enumerate() {
            let user = UserIx::try_from(user).unwrap_or(UserIx::MAX);
            let Some(trained) = baskets.len().checked_sub(held_out).filter(|&n| n > 0) else {
                continue;
            };
            for (ordinal, basket) in baskets[..trained].iter().enumerate() {
                now = now.max(basket.time);
                interactions.extend(basket.items.iter().map(|&item| Interaction {
                    user,
                    item,
                    signal: Signal::Purchase,
                    time: basket.time,
                    basket: u32::try_from(ordinal + 1).unwrap_or(u32::MAX),
                    quantity: 1,
                }));
            }
            cases.push(Case {
                user,
                trained: baskets[..trained].to_vec(),
                target: baskets[trained].clone(),
            });
        }
        let data = TrainingData {
            users: u32::try_from(self.users.len()).unwrap_or(u32::MAX),
            items: (0..self.items.len())
                .map(|_| ItemFacts {
                    active: true,
                    ..ItemFacts::default()
                })
                .collect(),
            interactions,
            now: if now == i64::MIN { 0 } else { now },
        };
        Split { data, cases }
    }
}

/// A training set and the baskets to predict.
pub struct Split {
    pub data: TrainingData,
    pub cases: Vec<Case>,
}

/// One user's history before the basket to predict, and that basket.
pub struct Case {
    pub user: UserIx,
    pub trained: Vec<Basket>,
    pub target: Basket,
}

impl Case {
    /// Every item the user bought before the target basket, sorted.
    pub fn bought(&self) -> Vec<ItemIx> {
        let mut bought: Vec<ItemIx> = self
            .trained
            .iter()
            .flat_map(|b| b.items.iter().copied())
            .collect();
        bought.sort_unstable();
        bought.dedup();
        bought
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_baskets_in_time_order() {
        let csv = "user,item,timestamp,basket\n\
                   u1,milk,200,o2\n\
                   u1,bread,100,o1\n\
                   u1,milk,100,o1\n\
                   u1,milk,100,o1\n\
                   u2,eggs,2026-01-01T00:00:00Z,o3\n";
        let data = Dataset::read(csv.as_bytes()).unwrap();
        assert_eq!(data.users, vec!["u1", "u2"]);
        assert_eq!(data.items, vec!["milk", "bread", "eggs"]);
        assert_eq!(data.lines, 5);
        assert_eq!(
            data.baskets[0],
            vec![
                Basket {
                    time: 100_000_000,
                    items: vec![0, 1]
                },
                Basket {
                    time: 200_000_000,
                    items: vec![0]
                },
            ]
        );
        assert_eq!(data.baskets[1][0].time, 1_767_225_600_000_000);
    }

    #[test]
    fn an_order_sequence_is_its_own_basket() {
        let csv = "user_id,product_id,order_number\n1,10,2\n1,11,1\n1,12,2\n";
        let data = Dataset::read(csv.as_bytes()).unwrap();
        assert_eq!(data.baskets[0].len(), 2);
        assert_eq!(data.baskets[0][1].items, vec![0, 2]);
        assert_eq!(data.baskets[0][1].time, 2 * MICROS_PER_DAY);
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let no_time = Dataset::read("user,item\n1,2\n".as_bytes()).unwrap_err();
        assert!(no_time.to_string().contains("timestamp"));
        let short = Dataset::read("user,item,timestamp\n1,2\n".as_bytes()).unwrap_err();
        assert!(short.to_string().contains("line 2"));
        let bad_time = Dataset::read("user,item,timestamp\n1,2,soon\n".as_bytes()).unwrap_err();
        assert!(format!("{bad_time:#}").contains("soon"));
        assert!(Dataset::read("".as_bytes()).is_err());
    }

    #[test]
    fn the_split_holds_out_each_users_last_baskets() {
        let csv = "user,item,sequence\na,1,1\na,2,2\na,3,3\nb,1,1\nb,4,2\nc,9,1\n";
        let data = Dataset::read(csv.as_bytes()).unwrap();
        let test = data.split(1);
        assert_eq!(test.cases.len(), 2, "c has a single basket");
        assert_eq!(
            test.cases[0].target.items,
            vec![data.items.iter().position(|i| i == "3").unwrap() as u32]
        );
        assert_eq!(test.data.interactions.len(), 3);
        let tuning = data.split(2);
        assert_eq!(tuning.cases.len(), 1);
        assert_eq!(tuning.cases[0].bought(), vec![0]);
        assert_eq!(tuning.data.interactions.len(), 1);
    }
}
