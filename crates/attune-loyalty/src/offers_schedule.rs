//! The background offer pass: once per period (`offer_generation_interval` of
//! loyalty's clock), every customer with an account is considered for offers
//! exactly as GenerateOffers would (consent, caps, one live offer per rule,
//! campaign budgets), a bounded batch per step.
//!
//! Exactly once per customer and period: the account remembers the period it
//! was last considered in (`offer_period`), written in the same transaction as
//! the offers, under loyalty's write lock, after checking it. A restart, a
//! second replica or a step that failed half-way never issues twice; a
//! customer whose inputs could not be read is considered again in the step
//! after.

use std::time::Duration;

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::follower::Backoff;
use chrono::{DateTime, Utc};
use sea_orm::FromQueryResult;
use tokio_util::sync::CancellationToken;

use crate::app::Loyalty;
use crate::store::{all, exec, one};

/// The period `now` falls in, for periods of `interval`.
fn period_of(now: DateTime<Utc>, interval: Duration) -> i64 {
    let length = i64::try_from(interval.as_micros())
        .unwrap_or(i64::MAX)
        .max(1);
    to_micros(now).div_euclid(length)
}

/// Where the pass of a period stands.
#[derive(Debug, Default)]
struct Pass {
    period: i64,
    /// The last customer id considered, for the next batch (keyset paging).
    after: String,
    finished: bool,
}

#[derive(Debug, FromQueryResult)]
struct Customer {
    customer_id: String,
}

#[derive(Debug, FromQueryResult)]
struct Considered {
    offer_period: Option<i64>,
}

/// What one step did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Customers whose offers were generated for the period.
    pub considered: usize,
    /// Offers issued.
    pub issued: usize,
}

impl Loyalty {
    /// Considers the customer for `period` unless that was done already: the
    /// offers and the period mark commit together.
    async fn consider_for_period(&self, customer: &str, period: i64) -> Result<usize, ApiError> {
        let inputs = self.offer_inputs(customer).await?;
        let txn = self.begin_write().await?;
        let Some(account) = one::<Considered>(
            &txn,
            "SELECT offer_period FROM loyalty_accounts WHERE customer_id = ?",
            vec![customer.into()],
        )
        .await?
        else {
            // Erased or merged away since the batch was read.
            return Ok(0);
        };
        if account.offer_period.is_some_and(|done| done >= period) {
            return Ok(0);
        }
        let generated = self.issue_offers(&txn, customer, &inputs).await?;
        exec(
            &txn,
            "UPDATE loyalty_accounts SET offer_period = ? WHERE customer_id = ?",
            vec![period.into(), customer.into()],
        )
        .await?;
        txn.commit().await?;
        Ok(generated.issued.len())
    }

    /// One step of the pass: the next `batch` customers not yet considered in
    /// the current period.
    async fn offer_pass_step(
        &self,
        pass: &mut Pass,
        interval: Duration,
        batch: u32,
    ) -> Result<Step, ApiError> {
        let period = period_of(self.clock.now(), interval);
        if period != pass.period {
            *pass = Pass {
                period,
                ..Pass::default()
            };
        }
        if pass.finished {
            return Ok(Step::default());
        }
        let customers: Vec<Customer> = all(
            &self.db,
            "SELECT customer_id FROM loyalty_accounts WHERE customer_id > ? \
             AND (offer_period IS NULL OR offer_period < ?) ORDER BY customer_id LIMIT ?",
            vec![
                pass.after.clone().into(),
                period.into(),
                i64::from(batch).into(),
            ],
        )
        .await?;
        let mut step = Step::default();
        for customer in &customers {
            step.issued += self
                .consider_for_period(&customer.customer_id, period)
                .await?;
            step.considered += 1;
            pass.after.clone_from(&customer.customer_id);
        }
        // New accounts opened behind the cursor wait for the next period.
        pass.finished = customers.len() < batch as usize;
        Ok(step)
    }
}

/// Runs the pass a step every `tick` until `cancel`; a failed step is retried
/// with backoff (from the customer it failed on).
pub(crate) async fn run(loyalty: Loyalty, tick: Duration, cancel: CancellationToken) {
    let interval = loyalty.settings.offer_generation_interval;
    let batch = loyalty.settings.offer_generation_batch.max(1);
    if interval.is_zero() {
        tracing::info!("background offer generation is off");
        return;
    }
    let mut pass = Pass::default();
    let mut retry = Backoff::new(Duration::from_millis(100), tick.max(Duration::from_secs(1)));
    loop {
        let wait = match loyalty.offer_pass_step(&mut pass, interval, batch).await {
            Ok(step) => {
                retry.reset();
                if step.considered > 0 {
                    tracing::debug!(
                        considered = step.considered,
                        issued = step.issued,
                        "offer pass step"
                    );
                }
                tick
            }
            Err(error) => {
                let wait = retry.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "background offer generation failed; retrying");
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_consecutive_slices_of_the_clock() {
        let day = Duration::from_secs(86_400);
        let start = DateTime::from_timestamp(86_400 * 100, 0).unwrap();
        assert_eq!(period_of(start, day), 100);
        assert_eq!(period_of(start + chrono::Duration::hours(23), day), 100);
        assert_eq!(period_of(start + chrono::Duration::hours(24), day), 101);
        assert_eq!(
            period_of(start, Duration::ZERO),
            to_micros(start),
            "never divides by zero"
        );
    }
}
