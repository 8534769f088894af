//! What every data-holding service needs to answer `attune.privacy.v1`
//! data-subject requests the same way.

use attune_proto::privacy::v1 as pb;
use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use sea_orm::DatabaseTransaction;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::error::{ApiError, Violations, checked};
use crate::idempotency::{Request as Logged, RequestLog};
use crate::pagination::{decode_cursor, encode_page_token, page_size};
use crate::secrets::PseudonymKey;
use crate::types::{CustomerId, RequestId, time};

mod export;

pub use export::{ExportCursor, export_page};

/// The metadata key a caller forwards a browser's `Sec-GPC` header as.
pub const GPC_METADATA_KEY: &str = "sec-gpc";

/// Whether a request carries the Global Privacy Control signal: `sec-gpc: 1`,
/// the only value the GPC specification defines; anything else is no signal.
pub fn gpc_signalled(metadata: &MetadataMap) -> bool {
    metadata
        .get(GPC_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim() == "1")
}

/// [`gpc_signalled`] on a request's HTTP headers, for a tower layer that sees
/// the call before tonic does (the gateway's policy).
pub fn gpc_signalled_in_headers(headers: &http::HeaderMap) -> bool {
    headers
        .get(GPC_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim() == "1")
}

/// What a data-subject request (an export, an erasure) is about, as its
/// request log fingerprints it ([`PseudonymKey::fingerprint`]): the same
/// request id for another customer is another request. The fingerprint is
/// taken over the JSON `{"customer_id":"…"}`, and those of requests already
/// logged must still match: the field keeps its name.
///
/// [`PseudonymKey::fingerprint`]: crate::secrets::PseudonymKey::fingerprint
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Subject<'a> {
    /// The customer the request is about.
    pub customer_id: &'a str,
}

/// What an erasure did, as its request log stores it (JSON) to answer its
/// retries: stored outcomes are read back, so the fields keep their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erased {
    /// How many records the erasure deleted, pseudonymised or forgot.
    pub erased_record_count: i64,
    /// When it ran.
    pub erase_time: DateTime<Utc>,
}

impl Erased {
    /// `count` records erased at `erase_time` (a count past `i64::MAX` stays there).
    pub fn new(count: u64, erase_time: DateTime<Utc>) -> Self {
        Self {
            erased_record_count: i64::try_from(count).unwrap_or(i64::MAX),
            erase_time,
        }
    }

    /// `service`'s receipt for this erasure, naming what it `retained`.
    pub fn response(self, service: &str, retained: Vec<String>) -> pb::EraseCustomerResponse {
        pb::EraseCustomerResponse {
            service: service.to_owned(),
            erased_record_count: self.erased_record_count,
            retained,
            erase_time: Some(time::to_proto(self.erase_time)),
        }
    }
}

/// A checked `ExportCustomerDataRequest`: whose data, under which request id,
/// how many records, and after which cursor (`C`, the service's own).
#[derive(Debug, Clone)]
pub struct ExportRequest<C> {
    /// The customer.
    pub customer: CustomerId,
    /// The export's request id (one per export, sent with every page).
    pub request_id: RequestId,
    /// Most records in this page (100 by default, at most 1000).
    pub limit: u32,
    /// Where the page starts; `None` for the first page.
    pub after: Option<C>,
}

impl<C> ExportRequest<C> {
    /// Checks `request`, reading its page token with `cursor`: every problem
    /// at once, as INVALID_ARGUMENT field violations.
    pub fn parse(
        request: pb::ExportCustomerDataRequest,
        cursor: impl Fn(&str) -> Option<C>,
    ) -> Result<Self, ApiError> {
        let pb::ExportCustomerDataRequest {
            customer_id,
            request_id,
            page_token,
            page_size: raw_size,
        } = request;
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let request_id = v.check("request_id", RequestId::parse(&request_id));
        let limit = v.check_field(page_size("page_size", raw_size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, cursor);
        v.finish()?;
        Ok(Self {
            customer: checked(customer),
            request_id: checked(request_id),
            limit: checked(limit),
            after,
        })
    }

    /// Whether this is the export's first page (no page token).
    pub fn is_first_page(&self) -> bool {
        self.after.is_none()
    }

    /// Claims the export's request id for its customer in `requests`, inside
    /// `txn`: one export is one request id, so the same id for another customer
    /// is ALREADY_EXISTS, and a retry of the first page is answered again.
    /// Called on the first page only; the caller commits `txn`.
    pub async fn claim(
        &self,
        requests: RequestLog,
        txn: &DatabaseTransaction,
        key: &PseudonymKey,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let fingerprint = key.fingerprint(&Subject {
            customer_id: self.customer.as_ref(),
        });
        let request = Logged {
            operation: "ExportCustomerData",
            request_id: self.request_id.as_ref(),
            fingerprint: &fingerprint,
        };
        requests
            .idempotent(txn, request, now, async |_| Ok::<(), ApiError>(()))
            .await?;
        Ok(())
    }
}

/// Checks an `EraseCustomerRequest`: the customer and the request id.
pub fn parse_erase(request: pb::EraseCustomerRequest) -> Result<(CustomerId, RequestId), ApiError> {
    let pb::EraseCustomerRequest {
        customer_id,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = v.check("customer_id", CustomerId::parse(&customer_id));
    let request_id = v.check("request_id", RequestId::parse(&request_id));
    v.finish()?;
    Ok((checked(customer), checked(request_id)))
}

/// A checked `ListLinkedCustomerIdsRequest`: whose linked ids, how many, and
/// from which offset (the page token is an offset into the service's list).
#[derive(Debug, Clone)]
pub struct LinkedIdsRequest {
    /// The customer whose linked ids are listed.
    pub customer: CustomerId,
    /// Most ids in this page (1000 by default and at most).
    pub limit: usize,
    /// How many ids earlier pages returned.
    pub offset: usize,
}

impl LinkedIdsRequest {
    /// Checks `request`: every problem at once, as INVALID_ARGUMENT field violations.
    pub fn parse(request: pb::ListLinkedCustomerIdsRequest) -> Result<Self, ApiError> {
        let pb::ListLinkedCustomerIdsRequest {
            customer_id,
            page_size: raw_size,
            page_token,
        } = request;
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let limit = v.check_field(page_size("page_size", raw_size, 1000, 1000));
        let offset = decode_cursor(&mut v, "page_token", &page_token, |c| {
            c.parse::<usize>().ok()
        });
        v.finish()?;
        Ok(Self {
            customer: checked(customer),
            limit: checked(limit) as usize,
            offset: offset.unwrap_or(0),
        })
    }

    /// This request's page of `linked` (the service's whole list, in a stable
    /// order), with the token of the next page when more remain.
    pub fn page(&self, linked: &[String]) -> pb::ListLinkedCustomerIdsResponse {
        let start = self.offset.min(linked.len());
        let end = start.saturating_add(self.limit).min(linked.len());
        let next_page_token = if end < linked.len() {
            encode_page_token(&end.to_string())
        } else {
            String::new()
        };
        pb::ListLinkedCustomerIdsResponse {
            customer_ids: linked[start..end].to_vec(),
            next_page_token,
        }
    }
}

/// The `ListLinkedCustomerIds` answer of a service that links no ids (its
/// data follows merges to the survivor): none, once the request is valid. It
/// never issues a page token, so any token is INVALID_ARGUMENT.
pub fn no_linked_ids(
    request: pb::ListLinkedCustomerIdsRequest,
) -> Result<pb::ListLinkedCustomerIdsResponse, ApiError> {
    let mut v = Violations::default();
    v.check("customer_id", CustomerId::parse(&request.customer_id));
    v.check_field(page_size("page_size", request.page_size, 1000, 1000));
    if !request.page_token.is_empty() {
        v.add("page_token", "must be a token from an earlier response");
    }
    v.finish()?;
    Ok(pb::ListLinkedCustomerIdsResponse::default())
}

/// Turns a JSON object into the `google.protobuf.Struct` an export record
/// carries; anything but an object becomes a struct with one field, `value`.
pub fn struct_from_json(json: serde_json::Value) -> Struct {
    match json {
        serde_json::Value::Object(fields) => Struct {
            fields: fields
                .into_iter()
                .map(|(name, value)| (name, value_from_json(value)))
                .collect(),
        },
        other => Struct {
            fields: [("value".to_owned(), value_from_json(other))].into(),
        },
    }
}

fn value_from_json(json: serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        // Struct numbers are doubles; ids beyond 2^53 would lose digits, so
        // exporters write such ids as strings.
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(value_from_json).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(struct_from_json(json)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sec_gpc_1_is_a_signal() {
        let with = |value: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert(GPC_METADATA_KEY, value.parse().unwrap());
            gpc_signalled(&metadata)
        };
        assert!(with("1"));
        assert!(!with("0"));
        assert!(!with("yes"));
        assert!(!gpc_signalled(&MetadataMap::new()));
        for (value, signalled) in [("1", true), (" 1 ", true), ("0", false), ("yes", false)] {
            let mut headers = http::HeaderMap::new();
            headers.insert(GPC_METADATA_KEY, value.parse().unwrap());
            assert_eq!(gpc_signalled_in_headers(&headers), signalled, "{value:?}");
        }
        assert!(!gpc_signalled_in_headers(&http::HeaderMap::new()));
    }

    #[test]
    fn a_subject_is_fingerprinted_as_its_customer_id_alone() {
        // Fingerprints of logged requests were taken over exactly these bytes.
        assert_eq!(
            serde_json::to_string(&Subject { customer_id: "c-1" }).unwrap(),
            r#"{"customer_id":"c-1"}"#
        );
    }

    #[test]
    fn an_erasure_reads_back_as_stored() {
        let stored = r#"{"erased_record_count":3,"erase_time":"2024-05-06T07:08:09.123456Z"}"#;
        let erased: Erased = serde_json::from_str(stored).unwrap();
        let at = DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(erased, Erased::new(3, at));
        assert_eq!(serde_json::to_string(&erased).unwrap(), stored);
        assert_eq!(Erased::new(u64::MAX, at).erased_record_count, i64::MAX);
        let receipt = erased.response("attune.test.v1", vec!["nothing".into()]);
        assert_eq!(receipt.service, "attune.test.v1");
        assert_eq!(receipt.erased_record_count, 3);
        assert_eq!(receipt.retained, ["nothing"]);
        assert_eq!(receipt.erase_time, Some(time::to_proto(at)));
    }

    #[test]
    fn json_objects_become_structs_field_by_field() {
        let exported = struct_from_json(serde_json::json!({
            "purpose": "analytics",
            "version": 2,
            "expires": null,
            "proof": { "form_hash": "sha256:x" },
            "tags": [true],
        }));
        let kind = |name: &str| exported.fields[name].kind.clone().unwrap();
        assert_eq!(kind("purpose"), Kind::StringValue("analytics".into()));
        assert_eq!(kind("version"), Kind::NumberValue(2.0));
        assert_eq!(kind("expires"), Kind::NullValue(0));
        let Kind::StructValue(proof) = kind("proof") else {
            panic!("nested objects are structs")
        };
        assert_eq!(
            proof.fields["form_hash"].kind,
            Some(Kind::StringValue("sha256:x".into()))
        );
        let Kind::ListValue(tags) = kind("tags") else {
            panic!("arrays are lists")
        };
        assert_eq!(tags.values[0].kind, Some(Kind::BoolValue(true)));
    }
}
