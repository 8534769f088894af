//! Requests of the segment API parsed into commands: every problem reported at
//! once, each naming its field; nothing is done with a request that has any.

use attune_kit::error::{ApiError, FieldViolation, Violations, checked};
use attune_kit::pagination::{decode_cursor, page_size};
use attune_kit::types::{Currency, CustomerId, RequestId, snake_case};
use attune_proto::profile::v1 as pb;
use prost::Message;
use serde::Serialize;

use super::rule::Rule;

/// Longest segment id.
const SEGMENT_ID_MAX: usize = 64;
/// Longest display name, in characters.
const DISPLAY_NAME_MAX: usize = 200;
/// Longest description, in characters.
const DESCRIPTION_MAX: usize = 2000;

/// A segment definition to create.
#[derive(Debug, Clone, Serialize)]
pub struct NewSegment {
    pub segment_id: String,
    pub display_name: String,
    pub description: String,
    /// The validated wire rule, hex-encoded for the request's fingerprint.
    #[serde(serialize_with = "encoded_rule")]
    pub rule: pb::SegmentRule,
    #[serde(skip)]
    pub request_id: RequestId,
}

/// A change of a segment definition: `None` keeps the stored value.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentUpdate {
    pub segment_id: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(serialize_with = "encoded_optional_rule")]
    pub rule: Option<pb::SegmentRule>,
    #[serde(skip)]
    pub request_id: RequestId,
}

/// A segment to delete.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentDeletion {
    pub segment_id: String,
    #[serde(skip)]
    pub request_id: RequestId,
}

fn encoded_rule<S: serde::Serializer>(rule: &pb::SegmentRule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(rule.encode_to_vec()))
}

fn encoded_optional_rule<S: serde::Serializer>(
    rule: &Option<pb::SegmentRule>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match rule {
        Some(rule) => encoded_rule(rule, s),
        None => s.serialize_none(),
    }
}

fn segment_id(v: &mut Violations, field: &str, raw: &str) -> String {
    v.check(field, snake_case(raw, SEGMENT_ID_MAX));
    raw.to_owned()
}

fn display_name(v: &mut Violations, field: &str, raw: &str) -> String {
    if raw.trim().is_empty() || raw.chars().count() > DISPLAY_NAME_MAX {
        v.add(field, format!("must be 1 to {DISPLAY_NAME_MAX} characters"));
    }
    raw.to_owned()
}

fn description(v: &mut Violations, field: &str, raw: &str) -> String {
    if raw.chars().count() > DESCRIPTION_MAX {
        v.add(
            field,
            format!("must be at most {DESCRIPTION_MAX} characters"),
        );
    }
    raw.to_owned()
}

/// Parses a rule as `field`, recording its violations; the wire rule when valid.
fn rule(
    v: &mut Violations,
    field: &str,
    raw: Option<pb::SegmentRule>,
    currency: Currency,
) -> Option<pb::SegmentRule> {
    let mut violations: Vec<FieldViolation> = Vec::new();
    let parsed = Rule::parse(raw.as_ref(), field, currency, &mut violations);
    for violation in violations {
        v.push(violation);
    }
    parsed.and(raw)
}

/// A preview's rule, parsed.
pub fn preview(request: pb::PreviewSegmentRequest, currency: Currency) -> Result<Rule, ApiError> {
    let pb::PreviewSegmentRequest { rule } = request;
    let mut violations = Vec::new();
    let parsed = Rule::parse(rule.as_ref(), "rule", currency, &mut violations);
    match parsed {
        Some(rule) if violations.is_empty() => Ok(rule),
        _ => Err(ApiError::InvalidArgument(violations)),
    }
}

pub fn create(
    request: pb::CreateSegmentRequest,
    currency: Currency,
) -> Result<NewSegment, ApiError> {
    let pb::CreateSegmentRequest {
        segment,
        request_id,
    } = request;
    let mut v = Violations::default();
    let Some(segment) = segment else {
        v.add("segment", "must be set");
        v.check("request_id", RequestId::parse(&request_id));
        return Err(v.finish().expect_err("a violation was recorded"));
    };
    let pb::Segment {
        segment_id: raw_id,
        display_name: raw_name,
        description: raw_description,
        rule: raw_rule,
        // Output only: ignored.
        version: _,
        member_count: _,
        create_time: _,
        update_time: _,
        evaluate_time: _,
    } = segment;
    let segment_id = segment_id(&mut v, "segment.segment_id", &raw_id);
    let display_name = display_name(&mut v, "segment.display_name", &raw_name);
    let description = description(&mut v, "segment.description", &raw_description);
    let rule = rule(&mut v, "segment.rule", raw_rule, currency);
    let request_id = v.check("request_id", RequestId::parse(&request_id));
    v.finish()?;
    Ok(NewSegment {
        segment_id,
        display_name,
        description,
        rule: checked(rule),
        request_id: checked(request_id),
    })
}

/// The fields an update may name.
const UPDATABLE: [&str; 3] = ["display_name", "description", "rule"];

pub fn update(
    request: pb::UpdateSegmentRequest,
    currency: Currency,
) -> Result<SegmentUpdate, ApiError> {
    let pb::UpdateSegmentRequest {
        segment,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
    for (i, path) in paths.iter().enumerate() {
        if !UPDATABLE.contains(&path.as_str()) {
            v.add(
                format!("update_mask.paths[{i}]"),
                "must be one of display_name, description, rule",
            );
        }
    }
    let request_id = v.check("request_id", RequestId::parse(&request_id));
    let Some(segment) = segment else {
        v.add("segment", "must be set");
        return Err(v.finish().expect_err("a violation was recorded"));
    };
    let pb::Segment {
        segment_id: raw_id,
        display_name: raw_name,
        description: raw_description,
        rule: raw_rule,
        version: _,
        member_count: _,
        create_time: _,
        update_time: _,
        evaluate_time: _,
    } = segment;
    let segment_id = segment_id(&mut v, "segment.segment_id", &raw_id);
    // AIP-134: named fields are replaced (unpopulated: cleared); with no mask,
    // exactly the populated ones.
    let named = |field: &str| {
        if paths.is_empty() {
            match field {
                "display_name" => !raw_name.is_empty(),
                "description" => !raw_description.is_empty(),
                _ => raw_rule.is_some(),
            }
        } else {
            paths.iter().any(|path| path == field)
        }
    };
    let (name_named, description_named, rule_named) =
        (named("display_name"), named("description"), named("rule"));
    if !(name_named || description_named || rule_named) && paths.is_empty() {
        v.add(
            "update_mask",
            "is empty and the segment populates no field to change",
        );
    }
    let display_name = name_named.then(|| display_name(&mut v, "segment.display_name", &raw_name));
    let description =
        description_named.then(|| description(&mut v, "segment.description", &raw_description));
    let rule = if rule_named {
        rule(&mut v, "segment.rule", raw_rule, currency)
    } else {
        None
    };
    v.finish()?;
    Ok(SegmentUpdate {
        segment_id,
        display_name,
        description,
        rule,
        request_id: checked(request_id),
    })
}

pub fn delete(request: pb::DeleteSegmentRequest) -> Result<SegmentDeletion, ApiError> {
    let pb::DeleteSegmentRequest {
        segment_id: raw_id,
        request_id,
    } = request;
    let mut v = Violations::default();
    let segment_id = segment_id(&mut v, "segment_id", &raw_id);
    let request_id = v.check("request_id", RequestId::parse(&request_id));
    v.finish()?;
    Ok(SegmentDeletion {
        segment_id,
        request_id: checked(request_id),
    })
}

pub fn get(request: pb::GetSegmentRequest) -> Result<String, ApiError> {
    let pb::GetSegmentRequest { segment_id: raw_id } = request;
    let mut v = Violations::default();
    let segment_id = segment_id(&mut v, "segment_id", &raw_id);
    v.finish()?;
    Ok(segment_id)
}

/// A page of a listing: its size and the key to start after.
#[derive(Debug, Clone)]
pub struct Page {
    pub size: u32,
    pub after: Option<String>,
}

fn page(v: &mut Violations, raw_size: i32, token: &str, default: u32, max: u32) -> Option<Page> {
    let size = v.check_field(page_size("page_size", raw_size, default, max));
    let after = decode_cursor(v, "page_token", token, |cursor| Some(cursor.to_owned()));
    // An empty token decodes to `None` without a violation: the first page.
    Some(Page { size: size?, after })
}

pub fn list(request: pb::ListSegmentsRequest) -> Result<Page, ApiError> {
    let pb::ListSegmentsRequest {
        page_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let page = page(&mut v, page_size, &page_token, 50, 500);
    v.finish()?;
    Ok(checked(page))
}

pub fn customer_segments(
    request: pb::ListCustomerSegmentsRequest,
) -> Result<(CustomerId, Page), ApiError> {
    let pb::ListCustomerSegmentsRequest {
        customer_id,
        page_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let customer_id = v.check("customer_id", CustomerId::parse(&customer_id));
    let page = page(&mut v, page_size, &page_token, 100, 1000);
    v.finish()?;
    Ok((checked(customer_id), checked(page)))
}

pub fn segment_members(request: pb::ListSegmentMembersRequest) -> Result<(String, Page), ApiError> {
    let pb::ListSegmentMembersRequest {
        segment_id: raw_id,
        page_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let segment_id = segment_id(&mut v, "segment_id", &raw_id);
    let page = page(&mut v, page_size, &page_token, 100, 1000);
    v.finish()?;
    Ok((segment_id, checked(page)))
}
