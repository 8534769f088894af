//! Zero-party data, what the customer volunteered: the table of fields (name and
//! data category), which fields a request changes (AIP-134 mask rules), the
//! validation of each field, and how a change is applied with its provenance.
//!
//! No storage here: `zero_party_store` reads and writes the encoded record.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use attune_kit::error::Violations;
use attune_kit::types::{Channel, DataCategory};
use attune_proto::profile::v1 as pb;
use prost_types::Timestamp;

/// Whether a wire value is "populated" in the AIP-134 sense: a string, number or
/// enum other than its zero value, a set message, a non-empty list or map.
trait Populated {
    fn populated(&self) -> bool;
}

impl Populated for String {
    fn populated(&self) -> bool {
        !self.is_empty()
    }
}

impl Populated for i32 {
    fn populated(&self) -> bool {
        *self != 0
    }
}

impl<T> Populated for Vec<T> {
    fn populated(&self) -> bool {
        !self.is_empty()
    }
}

impl<K, V> Populated for HashMap<K, V> {
    fn populated(&self) -> bool {
        !self.is_empty()
    }
}

impl<T> Populated for Option<T> {
    fn populated(&self) -> bool {
        self.is_some()
    }
}

macro_rules! fields {
    ($( $variant:ident: $field:ident, $category:ident; )+) => {
        /// A writable field of `ZeroPartyData`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub(crate) enum Field {
            $( $variant, )+
        }

        impl Field {
            /// Every writable field, in wire order of their declaration.
            pub const ALL: &'static [Field] = &[$( Field::$variant, )+];

            /// The field's name: its mask path, provenance key and feed name.
            pub fn name(self) -> &'static str {
                match self {
                    $( Field::$variant => stringify!($field), )+
                }
            }

            /// The data category the consent rule checks for the field.
            pub fn category(self) -> DataCategory {
                match self {
                    $( Field::$variant => DataCategory::$category, )+
                }
            }

            /// Whether `data` holds a value for the field.
            pub fn is_set(self, data: &pb::ZeroPartyData) -> bool {
                match self {
                    $( Field::$variant => data.$field.populated(), )+
                }
            }

            /// Whether `a` and `b` hold the same value for the field.
            fn same(self, a: &pb::ZeroPartyData, b: &pb::ZeroPartyData) -> bool {
                match self {
                    $( Field::$variant => a.$field == b.$field, )+
                }
            }

            /// Copies the field's value (or its absence) from `from` to `to`.
            fn copy(self, from: &pb::ZeroPartyData, to: &mut pb::ZeroPartyData) {
                match self {
                    $( Field::$variant => to.$field = from.$field.clone(), )+
                }
            }
        }
    };
}

fields! {
    PreferredName: preferred_name, Preferences;
    Sizes: sizes, Preferences;
    FavouriteCategoryIds: favourite_category_ids, Preferences;
    FavouriteBrands: favourite_brands, Preferences;
    AgeBand: age_band, Demographics;
    Birthday: birthday, Demographics;
    Gender: gender, Demographics;
    PreferredChannels: preferred_channels, Preferences;
    LanguageCode: language_code, Preferences;
    Attributes: attributes, Preferences;
    Household: household, Demographics;
    DietaryPreferences: dietary_preferences, Preferences;
    StylePreferences: style_preferences, Preferences;
    PreferredStoreId: preferred_store_id, Location;
    TimeZone: time_zone, Location;
}

/// Output-only fields of `ZeroPartyData`, which a mask may not name.
const OUTPUT_ONLY: [&str; 3] = ["channel", "update_time", "provenance"];

impl Field {
    /// The field a mask path names.
    pub fn parse(path: &str) -> Result<Self, String> {
        if OUTPUT_ONLY.contains(&path) {
            return Err(format!("{path:?} is output only and cannot be set"));
        }
        Self::ALL
            .iter()
            .copied()
            .find(|field| field.name() == path)
            .ok_or_else(|| {
                format!("{path:?} is not a field of ZeroPartyData (top-level field names only)")
            })
    }
}

/// The fields a request changes: those its mask names, or with an empty mask the
/// ones populated in `data`. Violations name `mask_field`.
pub(crate) fn fields_to_change(
    v: &mut Violations,
    mask_field: &str,
    data: &pb::ZeroPartyData,
    paths: &[String],
) -> Vec<Field> {
    if paths.is_empty() {
        return Field::ALL
            .iter()
            .copied()
            .filter(|field| field.is_set(data))
            .collect();
    }
    let mut fields = BTreeSet::new();
    for (i, path) in paths.iter().enumerate() {
        match Field::parse(path) {
            Ok(field) => {
                if !fields.insert(field) {
                    v.add(format!("{mask_field}.paths[{i}]"), "is named twice");
                }
            }
            Err(reason) => v.add(format!("{mask_field}.paths[{i}]"), reason),
        }
    }
    fields.into_iter().collect()
}

/// Checks the values `fields` take from `data` (violations name
/// `<prefix>.<field>`); unset values are clearings and always valid.
pub(crate) fn validate(
    v: &mut Violations,
    prefix: &str,
    data: &pb::ZeroPartyData,
    fields: &[Field],
) {
    for field in fields {
        let name = format!("{prefix}.{}", field.name());
        if let Err(reason) = check(*field, data) {
            v.add(name, reason);
        }
    }
}

fn check(field: Field, data: &pb::ZeroPartyData) -> Result<(), String> {
    match field {
        Field::PreferredName => max_chars(&data.preferred_name, 100),
        Field::Sizes => {
            at_most(data.sizes.len(), 20)?;
            let mut types = BTreeSet::new();
            for (i, size) in data.sizes.iter().enumerate() {
                lower_snake(&size.size_type, 64).map_err(|e| format!("[{i}].size_type {e}"))?;
                if size.value.is_empty() || size.value.chars().count() > 32 {
                    return Err(format!("[{i}].value must be 1 to 32 characters"));
                }
                max_chars(&size.size_system, 16).map_err(|e| format!("[{i}].size_system {e}"))?;
                if !types.insert(size.size_type.as_str()) {
                    return Err(format!("[{i}] repeats size_type {:?}", size.size_type));
                }
            }
            Ok(())
        }
        Field::FavouriteCategoryIds => texts(&data.favourite_category_ids, 20, 128),
        Field::FavouriteBrands => texts(&data.favourite_brands, 20, 100),
        Field::AgeBand => pb::AgeBand::try_from(data.age_band)
            .map(|_| ())
            .map_err(|_| format!("{} is not a known age band", data.age_band)),
        Field::Birthday => match &data.birthday {
            None => Ok(()),
            Some(birthday) => check_birthday(birthday),
        },
        Field::Gender => max_chars(&data.gender, 64),
        Field::PreferredChannels => {
            let mut seen = BTreeSet::new();
            for (i, raw) in data.preferred_channels.iter().enumerate() {
                Channel::from_proto(*raw).map_err(|e| format!("[{i}] {e}"))?;
                if !seen.insert(*raw) {
                    return Err(format!("[{i}] is a duplicate"));
                }
            }
            Ok(())
        }
        Field::LanguageCode => {
            max_chars(&data.language_code, 35)?;
            let tag = data
                .language_code
                .split('-')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
            if data.language_code.is_empty() || tag {
                Ok(())
            } else {
                Err("must be a BCP 47 language tag, for example \"de-DE\"".into())
            }
        }
        Field::Attributes => attributes(&data.attributes),
        Field::Household => match &data.household {
            None => Ok(()),
            Some(household)
                if (0..=20).contains(&household.adults)
                    && (0..=20).contains(&household.children) =>
            {
                Ok(())
            }
            Some(_) => Err("adults and children must each be 0 to 20".into()),
        },
        Field::DietaryPreferences => {
            at_most(data.dietary_preferences.len(), 8)?;
            let mut seen = BTreeSet::new();
            for (i, raw) in data.dietary_preferences.iter().enumerate() {
                match pb::DietaryPreference::try_from(*raw) {
                    Ok(pb::DietaryPreference::Unspecified) | Err(_) => {
                        return Err(format!("[{i}] must be a known dietary preference"));
                    }
                    Ok(_) => {}
                }
                if !seen.insert(*raw) {
                    return Err(format!("[{i}] is a duplicate"));
                }
            }
            Ok(())
        }
        Field::StylePreferences => {
            at_most(data.style_preferences.len(), 20)?;
            for (i, style) in data.style_preferences.iter().enumerate() {
                lower_snake(style, 64).map_err(|e| format!("[{i}] {e}"))?;
            }
            Ok(())
        }
        Field::PreferredStoreId => max_chars(&data.preferred_store_id, 64),
        Field::TimeZone => {
            max_chars(&data.time_zone, 64)?;
            let iana = data
                .time_zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
            if iana {
                Ok(())
            } else {
                Err("must be an IANA time zone name, for example \"Europe/Berlin\"".into())
            }
        }
    }
}

fn check_birthday(birthday: &pb::Birthday) -> Result<(), String> {
    let days = match birthday.month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return Err("month must be 1 to 12".into()),
    };
    if (1..=days).contains(&birthday.day) {
        Ok(())
    } else {
        Err(format!(
            "day must be 1 to {days} in month {}",
            birthday.month
        ))
    }
}

fn at_most(len: usize, max: usize) -> Result<(), String> {
    if len > max {
        Err(format!("must have at most {max} entries"))
    } else {
        Ok(())
    }
}

fn max_chars(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(())
    }
}

fn texts(values: &[String], max_entries: usize, max_len: usize) -> Result<(), String> {
    at_most(values.len(), max_entries)?;
    for (i, value) in values.iter().enumerate() {
        if value.is_empty() || value.chars().count() > max_len {
            return Err(format!("[{i}] must be 1 to {max_len} characters"));
        }
    }
    Ok(())
}

/// Lower snake case, 1 to `max` characters, starting with a letter.
pub(crate) fn lower_snake(value: &str, max: usize) -> Result<(), String> {
    let starts = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let snake = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if starts && snake && value.len() <= max {
        Ok(())
    } else {
        Err(format!(
            "must be lower snake case (a-z, 0-9, _), 1 to {max} characters, starting with a letter"
        ))
    }
}

/// The rule for retailer-defined key-value fields: at most 50 entries, keys lower
/// snake case 1 to 64 characters, values up to 256 characters.
pub(crate) fn attributes(attributes: &HashMap<String, String>) -> Result<(), String> {
    at_most(attributes.len(), 50)?;
    let mut keys: Vec<&String> = attributes.keys().collect();
    keys.sort();
    for key in keys {
        lower_snake(key, 64).map_err(|e| format!("key {key:?} {e}"))?;
        max_chars(&attributes[key], 256).map_err(|e| format!("value of {key:?} {e}"))?;
    }
    Ok(())
}

/// What a change did, by field name (the feed entry's lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub provided: Vec<String>,
    pub updated: Vec<String>,
    pub cleared: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.provided.is_empty() && self.updated.is_empty() && self.cleared.is_empty()
    }
}

/// Applies `fields` of `request` to `stored`, as given through `channel` at
/// `now`, allowed by `purposes` (per category of each field set). Each field set
/// records its provenance: `first_provide_time` is kept while the field stays
/// set and starts again after it was cleared.
pub(crate) fn apply(
    stored: &mut pb::ZeroPartyData,
    request: &pb::ZeroPartyData,
    fields: &[Field],
    channel: Channel,
    purposes: &BTreeMap<DataCategory, Vec<pb::PurposeNotice>>,
    now: Timestamp,
) -> Changes {
    let mut changes = Changes::default();
    for field in fields.iter().copied() {
        let (was, will) = (field.is_set(stored), field.is_set(request));
        let name = field.name().to_owned();
        let first_provide_time = match (was, will) {
            (false, false) => continue,
            (true, true) if field.same(stored, request) => continue,
            (true, false) => {
                field.copy(request, stored);
                stored.provenance.remove(&name);
                changes.cleared.push(name);
                continue;
            }
            (false, true) => {
                changes.provided.push(name.clone());
                Some(now)
            }
            (true, true) => {
                changes.updated.push(name.clone());
                stored
                    .provenance
                    .get(&name)
                    .and_then(|kept| kept.first_provide_time)
                    .or(Some(now))
            }
        };
        field.copy(request, stored);
        stored.provenance.insert(
            name,
            pb::FieldProvenance {
                first_provide_time,
                update_time: Some(now),
                channel: channel.to_proto().into(),
                data_category: field.category().to_proto().into(),
                purposes: purposes.get(&field.category()).cloned().unwrap_or_default(),
            },
        );
    }
    if !changes.is_empty() {
        stored.channel = channel.to_proto().into();
        stored.update_time = Some(now);
    }
    changes
}

/// Copies into `target` every field it has not set that `source` has, with its
/// provenance (a merge); returns the names copied.
pub(crate) fn fill_from(
    target: &mut pb::ZeroPartyData,
    source: &pb::ZeroPartyData,
    now: Timestamp,
) -> Vec<String> {
    let mut copied = Vec::new();
    for field in Field::ALL.iter().copied() {
        if field.is_set(target) || !field.is_set(source) {
            continue;
        }
        field.copy(source, target);
        let name = field.name().to_owned();
        if let Some(provenance) = source.provenance.get(&name) {
            target.provenance.insert(name.clone(), provenance.clone());
        }
        copied.push(name);
    }
    if !copied.is_empty() {
        target.update_time = Some(now);
        if target.channel == 0 {
            target.channel = source.channel;
        }
    }
    copied
}

/// A canonical text of the values `fields` take from `data`, for a request's
/// fingerprint (maps sorted, so the same request always reads the same).
pub(crate) fn canonical(data: &pb::ZeroPartyData, fields: &[Field]) -> Vec<(String, String)> {
    use prost::Message;
    fields
        .iter()
        .map(|field| {
            let value = if *field == Field::Attributes {
                let sorted: BTreeMap<&String, &String> = data.attributes.iter().collect();
                serde_json::to_string(&sorted).unwrap_or_default()
            } else {
                let mut only = pb::ZeroPartyData::default();
                field.copy(data, &mut only);
                hex::encode(only.encode_to_vec())
            };
            (field.name().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn allowed() -> BTreeMap<DataCategory, Vec<pb::PurposeNotice>> {
        BTreeMap::from([(
            DataCategory::Preferences,
            vec![pb::PurposeNotice {
                purpose_code: "personalization".into(),
                notice_version: 1,
            }],
        )])
    }

    #[test]
    fn every_field_has_a_unique_name_and_output_only_names_are_refused() {
        let names: BTreeSet<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Field::ALL.len());
        assert_eq!(Field::parse("birthday"), Ok(Field::Birthday));
        assert!(Field::parse("provenance").is_err());
        assert!(Field::parse("birthday.month").is_err());
    }

    #[test]
    fn first_provide_time_survives_updates_and_restarts_after_clearing() {
        let mut stored = pb::ZeroPartyData::default();
        let mut request = pb::ZeroPartyData {
            preferred_name: "Ada".into(),
            ..Default::default()
        };
        let fields = [Field::PreferredName];
        let changes = apply(
            &mut stored,
            &request,
            &fields,
            Channel::Web,
            &allowed(),
            at(10),
        );
        assert_eq!(changes.provided, ["preferred_name"]);
        request.preferred_name = "Ada L.".into();
        let changes = apply(
            &mut stored,
            &request,
            &fields,
            Channel::App,
            &allowed(),
            at(20),
        );
        assert_eq!(changes.updated, ["preferred_name"]);
        let provenance = &stored.provenance["preferred_name"];
        assert_eq!(provenance.first_provide_time, Some(at(10)));
        assert_eq!(provenance.update_time, Some(at(20)));
        request.preferred_name.clear();
        let changes = apply(
            &mut stored,
            &request,
            &fields,
            Channel::App,
            &allowed(),
            at(30),
        );
        assert_eq!(changes.cleared, ["preferred_name"]);
        assert!(stored.provenance.is_empty());
        request.preferred_name = "Ada".into();
        apply(
            &mut stored,
            &request,
            &fields,
            Channel::App,
            &allowed(),
            at(40),
        );
        assert_eq!(
            stored.provenance["preferred_name"].first_provide_time,
            Some(at(40))
        );
    }

    #[test]
    fn the_same_value_again_changes_nothing() {
        let request = pb::ZeroPartyData {
            favourite_brands: vec!["acme".into()],
            ..Default::default()
        };
        let mut stored = pb::ZeroPartyData::default();
        let fields = [Field::FavouriteBrands];
        apply(
            &mut stored,
            &request,
            &fields,
            Channel::Web,
            &allowed(),
            at(1),
        );
        let again = apply(
            &mut stored,
            &request,
            &fields,
            Channel::Web,
            &allowed(),
            at(2),
        );
        assert!(again.is_empty());
        assert_eq!(stored.update_time, Some(at(1)));
    }

    #[test]
    fn bad_values_are_refused_per_field() {
        for data in [
            pb::ZeroPartyData {
                birthday: Some(pb::Birthday { month: 2, day: 30 }),
                ..Default::default()
            },
            pb::ZeroPartyData {
                style_preferences: vec!["Not Snake".into()],
                ..Default::default()
            },
            pb::ZeroPartyData {
                preferred_channels: vec![1, 1],
                ..Default::default()
            },
        ] {
            let mut v = Violations::default();
            let fields = fields_to_change(&mut v, "update_mask", &data, &[]);
            validate(&mut v, "data", &data, &fields);
            assert!(v.finish().is_err(), "{data:?}");
        }
    }
}
