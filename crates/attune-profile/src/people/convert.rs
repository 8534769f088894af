//! Requests from the wire, validated into commands (every violation named by
//! its field), and the fingerprints that tell a retry from a reused request id.

use std::collections::{BTreeMap, BTreeSet};

use attune_kit::error::{ApiError, Violations, checked};
use attune_kit::secrets::PseudonymKey;
use attune_kit::types::{Channel, CustomerId, RequestId};
use attune_proto::profile::v1 as pb;
use serde_json::json;

use super::identities::MAX_PER_PROFILE;
use super::zero_party::{self, Field};
use crate::identity::StoredIdentity;

/// The longest `home_store_id`.
const MAX_HOME_STORE_ID: usize = 64;

fn customer(v: &mut Violations, field: &str, raw: &str) -> Option<CustomerId> {
    v.check(field, CustomerId::parse(raw))
}

fn request_id(v: &mut Violations, raw: &str) -> Option<RequestId> {
    v.check("request_id", RequestId::parse(raw))
}

/// Parses an identity; violations name `<field>.identity_type` or `<field>.value`.
fn identity(
    v: &mut Violations,
    key: &PseudonymKey,
    field: &str,
    identity: Option<&pb::Identity>,
) -> Option<(StoredIdentity, i32)> {
    let Some(identity) = identity else {
        v.add(field, "must be set");
        return None;
    };
    let channel = match Channel::from_proto_optional(identity.channel) {
        Ok(channel) => channel.map_or(0, |c| c.to_proto().into()),
        Err(reason) => {
            v.add(format!("{field}.channel"), reason);
            return None;
        }
    };
    match StoredIdentity::parse(key, identity.identity_type, &identity.value) {
        Ok(stored) => Some((stored, channel)),
        Err(reason) => {
            let (part, why) = reason.split_once(": ").unwrap_or(("value", &reason));
            v.add(format!("{field}.{part}"), why);
            None
        }
    }
}

/// CreateProfile, validated.
#[derive(Debug, Clone)]
pub(crate) struct Create {
    /// `None`: an anonymous profile whose id Attune assigns.
    pub customer_id: Option<CustomerId>,
    pub kind: pb::ProfileKind,
    /// Each identity with the channel it was seen on (0: not said).
    pub identities: Vec<(StoredIdentity, i32)>,
    pub channel: Channel,
    pub request_id: RequestId,
}

impl Create {
    pub fn fingerprint(&self, key: &PseudonymKey) -> String {
        key.fingerprint(&json!({
            "customer_id": self.customer_id.as_ref().map(AsRef::<str>::as_ref),
            "kind": self.kind as i32,
            "identities": self.identities.iter()
                .map(|(identity, channel)| json!([identity.identity_type, identity.value, channel]))
                .collect::<Vec<_>>(),
            "channel": self.channel.as_str(),
        }))
    }
}

pub(crate) fn create(
    key: &PseudonymKey,
    request: pb::CreateProfileRequest,
) -> Result<Create, ApiError> {
    let pb::CreateProfileRequest {
        customer_id,
        kind,
        identities,
        channel,
        request_id: raw_request_id,
    } = request;
    let mut v = Violations::default();
    let kind = match pb::ProfileKind::try_from(kind) {
        Ok(pb::ProfileKind::Unspecified) | Err(_) => {
            v.add(
                "kind",
                "must be PROFILE_KIND_KNOWN or PROFILE_KIND_ANONYMOUS",
            );
            None
        }
        Ok(kind) => Some(kind),
    };
    let customer_id = if customer_id.is_empty() && kind == Some(pb::ProfileKind::Anonymous) {
        None
    } else {
        customer(&mut v, "customer_id", &customer_id)
    };
    if identities.len() > MAX_PER_PROFILE {
        v.add(
            "identities",
            format!("must have at most {MAX_PER_PROFILE} entries"),
        );
    }
    let mut parsed = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, raw) in identities.iter().enumerate() {
        let field = format!("identities[{i}]");
        if let Some((stored, channel)) = identity(&mut v, key, &field, Some(raw)) {
            if !seen.insert(stored.clone()) {
                v.add(field, "is the same identity as an earlier entry");
            }
            parsed.push((stored, channel));
        }
    }
    let channel = v.check("channel", Channel::from_proto(channel));
    let request_id = request_id(&mut v, &raw_request_id);
    v.finish()?;
    Ok(Create {
        customer_id,
        kind: checked(kind),
        identities: parsed,
        channel: checked(channel),
        request_id: checked(request_id),
    })
}

/// GetProfile, GetZeroPartyData: one customer id.
pub(crate) fn customer_id(raw: &str) -> Result<CustomerId, ApiError> {
    let mut v = Violations::default();
    let customer = customer(&mut v, "customer_id", raw);
    v.finish()?;
    Ok(checked(customer))
}

/// UpdateProfile, validated: each writable field to replace (`Some`), with its new
/// value (empty: cleared).
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub customer_id: CustomerId,
    pub home_store_id: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub request_id: RequestId,
}

impl Update {
    pub fn fingerprint(&self, key: &PseudonymKey) -> String {
        key.fingerprint(&json!({
            "customer_id": self.customer_id.as_ref(),
            "home_store_id": self.home_store_id,
            "attributes": self.attributes,
        }))
    }

    /// Whether the update sets (rather than clears or keeps) a field, which
    /// needs consent for PREFERENCES.
    pub fn sets_a_value(&self) -> bool {
        self.home_store_id.as_ref().is_some_and(|id| !id.is_empty())
            || self.attributes.as_ref().is_some_and(|map| !map.is_empty())
    }
}

/// Profile fields that exist but are not writable here, and who owns them.
const NOT_WRITABLE: [(&str, &str); 9] = [
    ("customer_id", "identifies the profile"),
    ("kind", "is set at creation"),
    ("identities", "change with LinkIdentity and UnlinkIdentity"),
    ("merged_customer_ids", "is output only"),
    ("create_channel", "is output only"),
    ("create_time", "is output only"),
    ("update_time", "is output only"),
    ("last_event_time", "is output only"),
    ("merged_customer_count", "is output only"),
];

pub(crate) fn update(request: pb::UpdateProfileRequest) -> Result<Update, ApiError> {
    let pb::UpdateProfileRequest {
        profile,
        update_mask,
        request_id: raw_request_id,
    } = request;
    let mut v = Violations::default();
    let Some(profile) = profile else {
        v.add("profile", "must be set");
        request_id(&mut v, &raw_request_id);
        return Err(v.finish().expect_err("a violation was recorded"));
    };
    let customer_id = customer(&mut v, "profile.customer_id", &profile.customer_id);
    let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
    let (mut home, mut attributes) = (false, false);
    if paths.is_empty() {
        home = !profile.home_store_id.is_empty();
        attributes = !profile.attributes.is_empty();
    }
    for (i, path) in paths.iter().enumerate() {
        let field = format!("update_mask.paths[{i}]");
        match path.as_str() {
            "home_store_id" if !home => home = true,
            "attributes" if !attributes => attributes = true,
            "home_store_id" | "attributes" => v.add(field, "is named twice"),
            other => match NOT_WRITABLE.iter().find(|(name, _)| *name == other) {
                Some((name, why)) => v.add(field, format!("{name} is not writable here: it {why}")),
                None if ["loyalty", "tier", "consent"].contains(&other) => v.add(
                    field,
                    format!("{other} is owned by another service and not writable here"),
                ),
                None => v.add(
                    field,
                    format!(
                        "{other:?} is not a writable Profile field (home_store_id, attributes)"
                    ),
                ),
            },
        }
    }
    if paths.is_empty() && !home && !attributes {
        v.add(
            "profile",
            "sets no writable field: populate home_store_id or attributes, or name the \
             fields to clear in update_mask",
        );
    }
    if home && profile.home_store_id.chars().count() > MAX_HOME_STORE_ID {
        v.add(
            "profile.home_store_id",
            format!("must be at most {MAX_HOME_STORE_ID} characters"),
        );
    }
    if attributes {
        v.check(
            "profile.attributes",
            zero_party::attributes(&profile.attributes),
        );
    }
    let request_id = request_id(&mut v, &raw_request_id);
    v.finish()?;
    Ok(Update {
        customer_id: checked(customer_id),
        home_store_id: home.then(|| profile.home_store_id.clone()),
        attributes: attributes.then(|| profile.attributes.into_iter().collect()),
        request_id: checked(request_id),
    })
}

/// LinkIdentity and UnlinkIdentity, validated.
#[derive(Debug, Clone)]
pub(crate) struct IdentityChange {
    pub customer_id: CustomerId,
    pub identity: StoredIdentity,
    pub channel: i32,
    pub request_id: RequestId,
}

impl IdentityChange {
    pub fn fingerprint(&self, key: &PseudonymKey) -> String {
        key.fingerprint(&json!({
            "customer_id": self.customer_id.as_ref(),
            "identity": [self.identity.identity_type, self.identity.value, self.channel],
        }))
    }
}

pub(crate) fn identity_change(
    key: &PseudonymKey,
    customer_id: &str,
    raw_identity: Option<&pb::Identity>,
    raw_request_id: &str,
) -> Result<IdentityChange, ApiError> {
    let mut v = Violations::default();
    let customer = customer(&mut v, "customer_id", customer_id);
    let parsed = identity(&mut v, key, "identity", raw_identity);
    let request_id = request_id(&mut v, raw_request_id);
    v.finish()?;
    let (identity, channel) = checked(parsed);
    Ok(IdentityChange {
        customer_id: checked(customer),
        identity,
        channel,
        request_id: checked(request_id),
    })
}

/// LookupProfile's identity.
pub(crate) fn lookup(
    key: &PseudonymKey,
    request: &pb::LookupProfileRequest,
) -> Result<StoredIdentity, ApiError> {
    let mut v = Violations::default();
    // The channel says where an identity was seen: a lookup ignores it.
    let without_channel = request.identity.as_ref().map(|identity| pb::Identity {
        channel: 0,
        ..identity.clone()
    });
    let parsed = identity(&mut v, key, "identity", without_channel.as_ref());
    v.finish()?;
    Ok(checked(parsed).0)
}

/// MergeProfiles, validated.
#[derive(Debug, Clone)]
pub(crate) struct Merge {
    pub source: CustomerId,
    pub target: CustomerId,
    pub request_id: RequestId,
}

impl Merge {
    pub fn fingerprint(&self, key: &PseudonymKey) -> String {
        key.fingerprint(&json!({
            "source": self.source.as_ref(),
            "target": self.target.as_ref(),
        }))
    }
}

pub(crate) fn merge(request: pb::MergeProfilesRequest) -> Result<Merge, ApiError> {
    let pb::MergeProfilesRequest {
        source_customer_id,
        target_customer_id,
        request_id: raw_request_id,
    } = request;
    let mut v = Violations::default();
    let source = customer(&mut v, "source_customer_id", &source_customer_id);
    let target = customer(&mut v, "target_customer_id", &target_customer_id);
    let request_id = request_id(&mut v, &raw_request_id);
    v.finish()?;
    Ok(Merge {
        source: checked(source),
        target: checked(target),
        request_id: checked(request_id),
    })
}

/// SetZeroPartyData, validated: the fields to change and their new values.
#[derive(Debug, Clone)]
pub(crate) struct SetZeroParty {
    pub customer_id: CustomerId,
    pub data: pb::ZeroPartyData,
    pub fields: Vec<Field>,
    pub channel: Channel,
    pub request_id: RequestId,
}

impl SetZeroParty {
    pub fn fingerprint(&self, key: &PseudonymKey) -> String {
        key.fingerprint(&json!({
            "customer_id": self.customer_id.as_ref(),
            "fields": zero_party::canonical(&self.data, &self.fields),
            "channel": self.channel.as_str(),
        }))
    }

    /// The fields set to a value (clearing needs no consent).
    pub fn fields_set(&self) -> impl Iterator<Item = Field> + '_ {
        self.fields
            .iter()
            .copied()
            .filter(|field| field.is_set(&self.data))
    }
}

pub(crate) fn set_zero_party(
    request: pb::SetZeroPartyDataRequest,
) -> Result<SetZeroParty, ApiError> {
    let pb::SetZeroPartyDataRequest {
        customer_id,
        data,
        update_mask,
        channel,
        request_id: raw_request_id,
    } = request;
    let mut v = Violations::default();
    let customer = customer(&mut v, "customer_id", &customer_id);
    let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
    let data = data.unwrap_or_default();
    let fields = zero_party::fields_to_change(&mut v, "update_mask", &data, &paths);
    zero_party::validate(&mut v, "data", &data, &fields);
    if paths.is_empty() && fields.is_empty() {
        v.add(
            "data",
            "sets no field: populate the fields to set, or name the fields to clear in update_mask",
        );
    }
    let channel = v.check("channel", Channel::from_proto(channel));
    let request_id = request_id(&mut v, &raw_request_id);
    v.finish()?;
    Ok(SetZeroParty {
        customer_id: checked(customer),
        data,
        fields,
        channel: checked(channel),
        request_id: checked(request_id),
    })
}
