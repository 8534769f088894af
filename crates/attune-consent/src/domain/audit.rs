//! The privacy audit log: every catalogue change, consent decision and data-subject
//! request, each entry chained to the one before by its hash, so that altering,
//! deleting or reordering an entry shows.
//!
//! An entry's hash covers the previous entry's hash and the entry's own content,
//! but not its sequence number: an entry moved to another place still matches its
//! own hash, and it is the link to its new neighbour that breaks. Subjects are
//! keyed pseudonyms (see [`attune_kit::secrets::PseudonymKey::subject`]), never
//! customer ids, so erasing a customer never has to rewrite the chain.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ConsentRecord, NewPurpose};

/// The `prev_hash` of the first entry: no entry comes before it.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the encoding, so that a later format cannot collide with this one.
const ENCODING: &[u8] = b"attune.consent.audit.v1";

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A purpose was added to the catalogue.
    PurposeCreated,
    /// A purpose's notice was published as a new version.
    NoticePublished,
    /// A consent decision entered the ledger.
    ConsentRecorded,
    /// A Global Privacy Control signal was honoured.
    GpcApplied,
    /// A customer's data was exported on request.
    DataExported,
    /// A customer's data was erased on request.
    CustomerErased,
    /// A data-subject request across every service (the gateway's export or
    /// erasure) ended: who asked, its request id, its outcome.
    DataSubjectRequest,
}

impl AuditKind {
    pub const ALL: [Self; 7] = [
        Self::PurposeCreated,
        Self::NoticePublished,
        Self::ConsentRecorded,
        Self::GpcApplied,
        Self::DataExported,
        Self::CustomerErased,
        Self::DataSubjectRequest,
    ];

    /// The stable name stored in the log (and covered by the entry's hash).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PurposeCreated => "purpose_created",
            Self::NoticePublished => "notice_published",
            Self::ConsentRecorded => "consent_recorded",
            Self::GpcApplied => "gpc_applied",
            Self::DataExported => "data_exported",
            Self::CustomerErased => "customer_erased",
            Self::DataSubjectRequest => "data_subject_request",
        }
    }

    /// Reads a stored name back.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Something to append to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    /// The customer concerned, as a keyed pseudonym; `None` for catalogue changes.
    pub subject: Option<String>,
    /// What happened, without personal data: ids, codes, versions, times.
    pub detail: Value,
}

impl AuditEvent {
    /// A purpose added to the catalogue at notice version 1.
    pub fn purpose_created(new: &NewPurpose) -> Self {
        Self::catalogue(AuditKind::PurposeCreated, new, 1)
    }

    /// A purpose's notice published as `version`.
    pub fn notice_published(update: &NewPurpose, version: i32) -> Self {
        Self::catalogue(AuditKind::NoticePublished, update, version)
    }

    fn catalogue(kind: AuditKind, purpose: &NewPurpose, version: i32) -> Self {
        let categories: Vec<&str> = purpose
            .notice
            .data_categories()
            .iter()
            .map(|category| category.as_str())
            .collect();
        Self {
            kind,
            subject: None,
            detail: json!({
                "purpose_code": purpose.code.as_ref(),
                "notice_version": version,
                "legal_basis": purpose.notice.legal_basis().as_str(),
                "data_categories": categories,
            }),
        }
    }

    /// A decision entered the ledger, about the customer whose pseudonym is
    /// `subject`. The proof's user agent and capturer stay out: they may identify
    /// a person, and the ledger keeps them until erasure.
    pub fn consent_recorded(subject: String, record: &ConsentRecord) -> Self {
        Self {
            kind: AuditKind::ConsentRecorded,
            subject: Some(subject),
            detail: json!({
                "record_id": record.record_id,
                "purpose_code": record.purpose.as_ref(),
                "decision": record.decision.as_str(),
                "notice_version": record.notice_version,
                "channel": record.channel.as_str(),
                "decide_time": time_text(record.decide_time),
                "expire_time": record.expire_time.map(time_text),
                "request_id": record.request_id,
            }),
        }
    }
}

/// A time as the log's details write it: RFC 3339, UTC, in microseconds.
fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One entry as stored. Fields are kept exactly as stored (the kind as text, the
/// detail as its JSON text, the time in microseconds), because the hash covers
/// those bytes and verification must not depend on being able to parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub sequence: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub detail: String,
    /// Microseconds since the Unix epoch, UTC.
    pub occur_micros: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The entry that appends `event` at `occur_micros` after `previous`, or as the
    /// first entry when there is none.
    pub fn append(previous: Option<&AuditEntry>, event: &AuditEvent, occur_micros: i64) -> Self {
        let (sequence, prev_hash) = previous.map_or((1, GENESIS_HASH), |previous| {
            (previous.sequence + 1, previous.hash.as_str())
        });
        let mut entry = Self {
            sequence,
            kind: event.kind.as_str().to_owned(),
            subject: event.subject.clone(),
            detail: event.detail.to_string(),
            occur_micros,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.content_hash();
        entry
    }

    /// The hex SHA-256 of the entry's content as it is now: `prev_hash`, kind,
    /// subject, time and detail, each length-prefixed (and the subject with a
    /// presence byte), so that no two different entries share an encoding.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        field(&mut hasher, ENCODING);
        field(&mut hasher, self.prev_hash.as_bytes());
        field(&mut hasher, self.kind.as_bytes());
        match &self.subject {
            None => hasher.update([0]),
            Some(subject) => {
                hasher.update([1]);
                field(&mut hasher, subject.as_bytes());
            }
        }
        hasher.update(self.occur_micros.to_be_bytes());
        field(&mut hasher, self.detail.as_bytes());
        hex::encode(hasher.finalize())
    }
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    let length = u64::try_from(bytes.len()).expect("a field's length fits in u64");
    hasher.update(length.to_be_bytes());
    hasher.update(bytes);
}

/// How the chain is broken at an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditProblemKind {
    /// The entry's content no longer matches its hash.
    Altered,
    /// The sequence skips this number: entries were deleted.
    Missing,
    /// The entry does not follow the one before it.
    OutOfOrder,
}

impl AuditProblemKind {
    /// A short lower-case name for people and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Altered => "altered",
            Self::Missing => "missing",
            Self::OutOfOrder => "out of order",
        }
    }
}

/// The first place where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    pub sequence: i64,
    pub kind: AuditProblemKind,
    /// A sentence a person can act on.
    pub description: String,
}

/// The outcome of verifying the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// How many entries were read.
    pub entry_count: i64,
    /// The stored hash of the last entry read; `None` when the log is empty.
    pub head_hash: Option<String>,
    /// The first problem found; `None` when the chain is intact.
    pub first_problem: Option<AuditProblem>,
}

impl AuditVerification {
    /// True when every entry is present, unaltered and in order.
    pub fn is_intact(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Verifies the log one entry at a time, in sequence order, so that a caller can
/// feed it page by page. After the first problem it only counts.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected: i64,
    prev_hash: String,
    verification: AuditVerification,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            verification: AuditVerification {
                entry_count: 0,
                head_hash: None,
                first_problem: None,
            },
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry: is it the next number, does its content match its
    /// hash, and does it hold the hash of the entry before it?
    pub fn push(&mut self, entry: &AuditEntry) {
        self.verification.entry_count += 1;
        self.verification.head_hash = Some(entry.hash.clone());
        if self.verification.first_problem.is_some() {
            return;
        }
        let sequence = entry.sequence;
        let problem = if sequence > self.expected {
            let (expected, last) = (self.expected, sequence - 1);
            let gap = if last == expected {
                format!("entry {expected} is missing")
            } else {
                format!("entries {expected} to {last} are missing")
            };
            let context = if expected == 1 {
                format!("the log starts at entry {sequence}")
            } else {
                format!("entry {sequence} follows entry {}", expected - 1)
            };
            Some(AuditProblem {
                sequence: expected,
                kind: AuditProblemKind::Missing,
                description: format!("{gap}: {context}"),
            })
        } else if sequence < self.expected {
            // Sequence numbers are unique and read in order; this is a caller's bug
            // or a broken read, reported rather than trusted.
            Some(AuditProblem {
                sequence,
                kind: AuditProblemKind::OutOfOrder,
                description: format!(
                    "entry {sequence} was read after entry {}",
                    self.expected - 1
                ),
            })
        } else if entry.content_hash() != entry.hash {
            Some(AuditProblem {
                sequence,
                kind: AuditProblemKind::Altered,
                description: format!(
                    "entry {sequence} ({}) was altered: its content no longer matches its hash",
                    entry.kind
                ),
            })
        } else if entry.prev_hash != self.prev_hash {
            let before = if sequence == 1 {
                "the start of the log".to_owned()
            } else {
                format!("entry {}", sequence - 1)
            };
            Some(AuditProblem {
                sequence,
                kind: AuditProblemKind::OutOfOrder,
                description: format!(
                    "entry {sequence} ({}) does not follow {before}: it holds another \
                     entry's hash, so entries were moved, or {before} was rewritten",
                    entry.kind
                ),
            })
        } else {
            None
        };
        self.verification.first_problem = problem;
        self.expected = sequence + 1;
        self.prev_hash.clone_from(&entry.hash);
    }

    /// The outcome over every entry pushed.
    pub fn finish(self) -> AuditVerification {
        self.verification
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chain(count: i64) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for n in 0..count {
            let event = AuditEvent {
                kind: AuditKind::ConsentRecorded,
                subject: Some(format!("hmac-sha256:{n:064x}")),
                detail: json!({"record_id": n + 1, "decision": "granted"}),
            };
            entries.push(AuditEntry::append(
                entries.last(),
                &event,
                1_700_000_000_000_000 + n,
            ));
        }
        entries
    }

    fn verify(entries: &[AuditEntry]) -> AuditVerification {
        let mut verifier = ChainVerifier::default();
        entries.iter().for_each(|entry| verifier.push(entry));
        verifier.finish()
    }

    fn problem(entries: &[AuditEntry]) -> (AuditProblemKind, i64) {
        let problem = verify(entries).first_problem.expect("a problem is found");
        (problem.kind, problem.sequence)
    }

    #[test]
    fn an_intact_chain_verifies_with_its_count_and_head() {
        let entries = chain(5);
        let verification = verify(&entries);
        assert!(verification.is_intact());
        assert_eq!(verification.entry_count, 5);
        assert_eq!(
            verification.head_hash.as_deref(),
            Some(entries[4].hash.as_str())
        );
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(entries[4].hash.len(), 64);
    }

    #[test]
    fn an_empty_log_is_intact_and_has_no_head() {
        let verification = verify(&[]);
        assert!(verification.is_intact());
        assert_eq!(
            (verification.entry_count, verification.head_hash),
            (0, None)
        );
    }

    #[test]
    fn an_altered_field_is_named() {
        let mut altered = chain(4);
        altered[2].detail = altered[2].detail.replace("granted", "denied");
        assert_eq!(problem(&altered), (AuditProblemKind::Altered, 3));

        for tamper in [
            (|e: &mut AuditEntry| e.kind = "customer_erased".into()) as fn(&mut AuditEntry),
            |e| e.subject = None,
            |e| e.occur_micros += 1,
            |e| e.prev_hash = GENESIS_HASH.into(),
        ] {
            let mut entries = chain(4);
            tamper(&mut entries[1]);
            assert_eq!(problem(&entries), (AuditProblemKind::Altered, 2));
        }
    }

    #[test]
    fn a_deleted_entry_is_missing() {
        let mut entries = chain(5);
        entries.remove(2);
        let problem = verify(&entries).first_problem.unwrap();
        assert_eq!(
            (problem.kind, problem.sequence),
            (AuditProblemKind::Missing, 3)
        );
        assert!(
            problem.description.contains("entry 3 is missing"),
            "{problem:?}"
        );

        let mut entries = chain(5);
        entries.drain(0..2);
        let problem = verify(&entries).first_problem.unwrap();
        assert_eq!(
            (problem.kind, problem.sequence),
            (AuditProblemKind::Missing, 1)
        );
        assert!(
            problem.description.contains("entries 1 to 2"),
            "{problem:?}"
        );
    }

    #[test]
    fn swapped_entries_are_out_of_order_at_the_first_of_them() {
        let mut entries = chain(5);
        let (third, fourth) = (entries[2].clone(), entries[3].clone());
        entries[2] = AuditEntry {
            sequence: 3,
            ..fourth
        };
        entries[3] = AuditEntry {
            sequence: 4,
            ..third
        };
        assert_eq!(problem(&entries), (AuditProblemKind::OutOfOrder, 3));
    }

    #[test]
    fn a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut entries = chain(4);
        entries[1].detail = entries[1].detail.replace("granted", "denied");
        entries[1].hash = entries[1].content_hash();
        assert_eq!(problem(&entries), (AuditProblemKind::OutOfOrder, 3));
    }

    #[test]
    fn a_first_entry_must_start_from_genesis() {
        let mut entries = chain(3);
        entries.remove(0);
        for (sequence, entry) in (1..).zip(entries.iter_mut()) {
            entry.sequence = sequence;
        }
        assert_eq!(problem(&entries), (AuditProblemKind::OutOfOrder, 1));
    }

    #[test]
    fn the_count_and_head_cover_entries_after_a_problem() {
        let mut entries = chain(5);
        entries[1].detail = "{}".into();
        let verification = verify(&entries);
        assert_eq!(verification.entry_count, 5);
        assert_eq!(verification.head_hash, Some(entries[4].hash.clone()));
        assert_eq!(verification.first_problem.unwrap().sequence, 2);
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let entry = chain(1).remove(0);
        let shifted = AuditEntry {
            subject: Some(String::new()),
            ..entry.clone()
        };
        let none = AuditEntry {
            subject: None,
            ..entry.clone()
        };
        assert_ne!(shifted.content_hash(), none.content_hash());
        let moved = AuditEntry {
            kind: format!("{}x", entry.kind),
            detail: entry.detail[1..].to_owned(),
            ..entry.clone()
        };
        assert_ne!(moved.content_hash(), entry.content_hash());
        // The sequence number is not hashed: moving an entry breaks its links.
        let renumbered = AuditEntry {
            sequence: 9,
            ..entry.clone()
        };
        assert_eq!(renumbered.content_hash(), entry.hash);
    }

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::from_stored(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::from_stored("PURPOSE_CREATED"), None);
    }
}
