//! Consent's operations: each validates against stored state, runs in one
//! transaction when it writes, and answers in domain types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use crate::domain::{AuditEvent, AuditVerification};
use crate::domain::{
    ConsentRecord, ConsentStatus, CustomerId, NewPurpose, Purpose, PurposeCode, RecordConsent,
    RequestId,
};
use crate::domain::{ExpiringGrant, ExpiringQuery, ExpiryWindow};
use crate::error::ConsentError;
use crate::store::{self, REQUESTS, SECRETS, WRITE_LOCK, changes, ledger, purposes};
use crate::watch::{ChangeFeed, Changes, StartAt, WatchError};
use attune_kit::clock::Clock;
use attune_kit::consent::ConsentChecker;
use attune_kit::db::{begin_snapshot, begin_write};
use attune_kit::idempotency::Request;
use attune_kit::secrets::{PseudonymKey, SecretsConfig};

/// One purpose's answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeAnswer {
    pub purpose: PurposeCode,
    pub status: ConsentStatus,
    /// The notice version of the decision the status derives from.
    pub notice_version: Option<i32>,
}

/// One purpose's current state with the decision it derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeState {
    pub purpose: PurposeCode,
    pub status: ConsentStatus,
    pub latest: Option<ConsentRecord>,
}

/// The consent service's operations over its database.
#[derive(Debug, Clone)]
pub struct Consent {
    pub(crate) db: DatabaseConnection,
    pub(crate) key: Arc<PseudonymKey>,
    pub(crate) feed: Arc<ChangeFeed>,
    cache: ConsentChecker,
    /// Where "now" comes from: the system clock, or a test's.
    pub(crate) clock: Clock,
}

impl Consent {
    /// Opens the service over a migrated database with its pseudonymisation key
    /// (the one `secrets` configures, else the one generated into the database
    /// on first start). `cache` is a consent checker that follows this service's
    /// own change stream: checks answer from it. `clock` says what time it is
    /// (`Clock::system()`, or a test's `ManualClock`).
    pub async fn open(
        db: DatabaseConnection,
        feed: Arc<ChangeFeed>,
        cache: ConsentChecker,
        secrets: &SecretsConfig,
        clock: Clock,
    ) -> Result<Self, ConsentError> {
        let (key, _source) = SECRETS.pseudonym_key(&db, secrets).await?;
        Ok(Self {
            db,
            key: Arc::new(key),
            feed,
            cache,
            clock,
        })
    }

    /// The current time, at the precision the store keeps.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Creates a purpose at notice version 1.
    pub async fn create_purpose(
        &self,
        new: NewPurpose,
        request_id: RequestId,
    ) -> Result<Purpose, ConsentError> {
        let now = self.now();
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request = Request {
            operation: "create_purpose",
            request_id: request_id.as_ref(),
            fingerprint: &self.key.fingerprint(&new),
        };
        REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                if !purposes::insert_new(txn, &new, now).await? {
                    return Err(ConsentError::PurposeExists(new.code.to_string()));
                }
                store::audit::append(txn, AuditEvent::purpose_created(&new), now).await?;
                Ok(1)
            })
            .await?;
        txn.commit().await?;
        self.get_purpose(&new.code, Some(1)).await
    }

    /// Publishes a new notice version (or keeps the current one if nothing changed).
    pub async fn update_purpose(
        &self,
        update: NewPurpose,
        request_id: RequestId,
    ) -> Result<Purpose, ConsentError> {
        let now = self.now();
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request = Request {
            operation: "update_purpose",
            request_id: request_id.as_ref(),
            fingerprint: &self.key.fingerprint(&update),
        };
        let version = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let published = purposes::publish_notice(txn, &update, now).await?;
                if published.new {
                    let event = AuditEvent::notice_published(&update, published.version);
                    store::audit::append(txn, event, now).await?;
                }
                Ok::<i32, ConsentError>(published.version)
            })
            .await?
            .into_inner();
        txn.commit().await?;
        self.get_purpose(&update.code, Some(version)).await
    }

    /// Reads a purpose at a notice version, or at its current one.
    pub async fn get_purpose(
        &self,
        code: &PurposeCode,
        version: Option<i32>,
    ) -> Result<Purpose, ConsentError> {
        if let Some(purpose) = purposes::get(&self.db, code, version).await? {
            return Ok(purpose);
        }
        match (version, purposes::get(&self.db, code, None).await?) {
            (Some(version), Some(_)) => Err(ConsentError::NoticeVersionNotFound {
                code: code.to_string(),
                version,
            }),
            _ => Err(ConsentError::PurposeNotFound(code.to_string())),
        }
    }

    /// One page of the catalogue after the code `after`.
    pub async fn list_purposes(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Purpose>, ConsentError> {
        purposes::list(&self.db, after, u64::from(limit)).await
    }

    /// Records a customer's decisions, all or none. The clock-relative rules
    /// ([`RecordConsent::check_times`]) hold for a first request only.
    pub async fn record(&self, command: RecordConsent) -> Result<Vec<ConsentRecord>, ConsentError> {
        let now = self.now();
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request_id = command.request_id.as_ref();
        let request = Request {
            operation: "record_consent",
            request_id,
            fingerprint: &self.key.fingerprint(&command),
        };
        let ids: Vec<i64> = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                // The error rolls the claim back with the transaction.
                let late = command.check_times(now);
                if !late.is_empty() {
                    return Err(ConsentError::Invalid(late));
                }
                let records = ledger::append(txn, &command, now).await?;
                // The log names the customer by pseudonym only, so erasure never
                // has to rewrite the chain.
                let subject = self.key.subject(&command.customer);
                for record in &records {
                    let event = AuditEvent::consent_recorded(subject.clone(), record);
                    store::audit::append(txn, event, now).await?;
                }
                Ok(records.iter().map(|record| record.record_id).collect())
            })
            .await?
            .into_inner();
        // Fresh or replayed, the records are read back by id: the outcome keeps
        // ids only, never personal data, so erasure need not rewrite it.
        let mut found = ledger::records_by_id(&txn, &ids).await?;
        let records = ids
            .iter()
            .map(|id| found.remove(id))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ConsentError::Corrupt(format!("records of {request_id}")))?;
        txn.commit().await?;
        self.committed(&command.customer);
        Ok(records)
    }

    /// The current state of each purpose asked, or of every consent-based purpose,
    /// with the change-stream position it reflects: read in one snapshot, so the
    /// state holds every change up to that position and none after it.
    pub async fn state(
        &self,
        customer: &CustomerId,
        mut asked: Vec<PurposeCode>,
    ) -> Result<(Vec<PurposeState>, i64), ConsentError> {
        if asked.is_empty() {
            asked = purposes::consent_based_codes(&self.db).await?;
        }
        asked.sort();
        asked.dedup();
        let txn = begin_snapshot(&self.db).await?;
        let position = changes::newest_position(&txn).await?;
        let current = ledger::current(&txn, customer, &asked).await?;
        let ids: Vec<i64> = current
            .values()
            .map(|decision| decision.record_id)
            .collect();
        let mut records = ledger::records_by_id(&txn, &ids).await?;
        txn.commit().await?;
        let now = self.now();
        let states = asked
            .into_iter()
            .map(|purpose| {
                let decision = current.get(purpose.as_ref());
                PurposeState {
                    status: ConsentStatus::at(decision, now),
                    latest: decision.and_then(|d| records.remove(&d.record_id)),
                    purpose,
                }
            })
            .collect();
        Ok((states, position))
    }

    /// One page of a customer's history after record id `after`.
    pub async fn history(
        &self,
        customer: &CustomerId,
        purpose: Option<&PurposeCode>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConsentRecord>, ConsentError> {
        ledger::history(&self.db, customer, purpose, after, u64::from(limit)).await
    }

    /// One page of the grants in force that expire inside the query's window, and
    /// the window's end: fixed now by a first page, carried by the cursor after it.
    pub async fn expiring(
        &self,
        query: &ExpiringQuery,
        limit: u32,
    ) -> Result<(Vec<ExpiringGrant>, DateTime<Utc>), ConsentError> {
        let now = self.now();
        let (window_end, after) = match &query.window {
            ExpiryWindow::Ahead(length) => (now + *length, None),
            ExpiryWindow::Resume(cursor) => (cursor.window_end, Some(cursor)),
        };
        let grants = store::expiring::list(
            &self.db,
            now,
            window_end,
            query.purpose.as_ref(),
            after,
            u64::from(limit),
        )
        .await?;
        Ok((grants, window_end))
    }

    /// Whether each purpose is granted now, in the order asked. Unknown customers
    /// and purposes have no current decision, so they are simply not granted.
    ///
    /// Answered from the cached checker every other service uses (see
    /// [`Consent::open`]) while it can vouch for its answer; from the database
    /// when it cannot (at start-up, or while the change stream is down).
    pub async fn check(
        &self,
        customer: &CustomerId,
        asked: Vec<PurposeCode>,
    ) -> Result<(Vec<PurposeAnswer>, DateTime<Utc>), ConsentError> {
        let codes: Vec<&str> = asked.iter().map(AsRef::as_ref).collect();
        let cached = self.cache.answers(customer.as_ref(), &codes).await;
        let now = self.now();
        if cached.len() == asked.len() && cached.iter().all(|answer| answer.status().is_some()) {
            // Each asked code moves into its answer: nothing is copied.
            let answers = asked
                .into_iter()
                .zip(cached)
                .filter_map(|(purpose, answer)| {
                    Some(PurposeAnswer {
                        purpose,
                        status: answer.status()?,
                        notice_version: answer.notice_version,
                    })
                })
                .collect();
            return Ok((answers, now));
        }
        let current = ledger::current(&self.db, customer, &asked).await?;
        let answers = asked
            .into_iter()
            .map(|purpose| {
                let current = current.get(purpose.as_ref());
                PurposeAnswer {
                    status: ConsentStatus::at(current, now),
                    notice_version: current.map(|current| current.notice_version),
                    purpose,
                }
            })
            .collect();
        Ok((answers, now))
    }

    /// Opens a stream of the changes after `start` (see [`ChangeFeed::watch`]).
    pub async fn watch(&self, start: StartAt) -> Result<Changes, WatchError> {
        Ok(self.feed.watch(start).await?)
    }

    /// Called after a write for `customer` committed: this process's next check
    /// must see it at once, and other processes' watchers soon.
    pub(crate) fn committed(&self, customer: &CustomerId) {
        self.cache.forget(customer.as_ref());
        self.feed.committed();
    }

    /// Verifies the privacy audit log's chain from its first entry to its newest.
    pub async fn verify_audit_log(&self) -> Result<AuditVerification, ConsentError> {
        let verification = store::audit::verify(&self.db).await?;
        if let Some(problem) = &verification.first_problem {
            tracing::warn!(
                sequence = problem.sequence,
                problem = problem.kind.as_str(),
                "the audit log's chain is broken"
            );
        }
        Ok(verification)
    }
}
