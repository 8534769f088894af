//! Reads the customer ids out of an encoded request without decoding it into
//! its message type: a walk over the protobuf wire format that follows one
//! path of field numbers and skips everything else. Repeated fields need no
//! special case: each occurrence of a field is visited. The gateway forwards
//! the original bytes; nothing is re-encoded.

use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, skip_field,
};

/// A path of field numbers from a request's top level to a field, through
/// nested (possibly repeated) messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<u32>);

impl FieldPath {
    pub(crate) fn new(numbers: Vec<u32>) -> Self {
        Self(numbers)
    }
}

/// An encoded message holding only `value` at `path` (its enclosing messages
/// each with only that field): what a test sends to name a customer.
pub(crate) fn naming(path: &FieldPath, value: &str) -> Vec<u8> {
    let mut encoded = value.as_bytes().to_vec();
    for &number in path.0.iter().rev() {
        let mut wrapped = Vec::with_capacity(encoded.len() + 6);
        encode_key(number, WireType::LengthDelimited, &mut wrapped);
        encode_varint(encoded.len() as u64, &mut wrapped);
        wrapped.extend_from_slice(&encoded);
        encoded = wrapped;
    }
    encoded
}

/// The message cannot be walked: truncated or not protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Every non-empty string at `path` in `message`, in wire order. A string that
/// is not UTF-8 is returned lossily: it can never equal a valid customer id, so
/// it is refused for a customer and left to the service's validation otherwise.
pub(crate) fn strings_at(message: &[u8], path: &FieldPath) -> Result<Vec<String>, Malformed> {
    let mut found = Vec::new();
    visit(message, &path.0, &mut |bytes| {
        if !bytes.is_empty() {
            found.push(String::from_utf8_lossy(bytes).into_owned());
        }
    })?;
    Ok(found)
}

/// Whether the field at `path` occurs in `message` at all (even empty).
pub(crate) fn occurs(message: &[u8], path: &FieldPath) -> Result<bool, Malformed> {
    let mut seen = false;
    visit(message, &path.0, &mut |_| seen = true)?;
    Ok(seen)
}

/// Calls `found` with the bytes of every length-delimited occurrence of the
/// last field of `path`. A last field of another wire type (a number) is
/// reported with no bytes.
fn visit(mut buf: &[u8], path: &[u32], found: &mut dyn FnMut(&[u8])) -> Result<(), Malformed> {
    let Some((&number, rest)) = path.split_first() else {
        return Ok(());
    };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|_| Malformed)?;
        if tag != number {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                .map_err(|_| Malformed)?;
            continue;
        }
        match wire_type {
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).map_err(|_| Malformed)?)
                    .map_err(|_| Malformed)?;
                if len > buf.len() {
                    return Err(Malformed);
                }
                let (field, after) = buf.split_at(len);
                buf = after;
                if rest.is_empty() {
                    found(field);
                } else {
                    visit(field, rest, found)?;
                }
            }
            other if rest.is_empty() => {
                skip_field(other, tag, &mut buf, DecodeContext::default())
                    .map_err(|_| Malformed)?;
                found(&[]);
            }
            // A path through a field that is not a message: not this contract.
            _ => return Err(Malformed),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_proto::loyalty::v1 as loyalty;
    use attune_proto::profile::v1 as profile;
    use prost::Message as _;

    #[test]
    fn a_top_level_id_is_read() {
        let request = profile::GetProfileRequest {
            customer_id: "c-1".into(),
        };
        let ids = strings_at(&request.encode_to_vec(), &FieldPath::new(vec![1])).unwrap();
        assert_eq!(ids, ["c-1"]);
    }

    #[test]
    fn ids_in_repeated_nested_messages_are_each_read() {
        let request = loyalty::BulkAdjustPointsRequest {
            adjustments: vec![
                loyalty::AdjustPointsRequest {
                    customer_id: "a".into(),
                    ..Default::default()
                },
                loyalty::AdjustPointsRequest::default(),
                loyalty::AdjustPointsRequest {
                    customer_id: "b".into(),
                    ..Default::default()
                },
            ],
        };
        let path = FieldPath::new(vec![1, 1]);
        let bytes = request.encode_to_vec();
        assert_eq!(strings_at(&bytes, &path).unwrap(), ["a", "b"]);
    }

    #[test]
    fn presence_of_a_message_field_is_seen_even_when_empty() {
        let with = profile::IngestEventsRequest {
            events: vec![profile::Event {
                identity: Some(profile::Identity::default()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let without = profile::IngestEventsRequest {
            events: vec![profile::Event::default()],
            ..Default::default()
        };
        let path = FieldPath::new(vec![1, 3]);
        assert!(occurs(&with.encode_to_vec(), &path).unwrap());
        assert!(!occurs(&without.encode_to_vec(), &path).unwrap());
    }

    #[test]
    fn a_message_naming_a_customer_reads_back() {
        let path = FieldPath::new(vec![1, 2]);
        let bytes = naming(&path, "c-9");
        let decoded = profile::IngestEventsRequest::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.events[0].customer_id, "c-9");
        assert_eq!(strings_at(&bytes, &path).unwrap(), ["c-9"]);
    }

    #[test]
    fn a_truncated_message_is_malformed() {
        let request = profile::GetProfileRequest {
            customer_id: "customer-1".into(),
        };
        let bytes = request.encode_to_vec();
        let path = FieldPath::new(vec![1]);
        assert_eq!(strings_at(&bytes[..bytes.len() - 2], &path), Err(Malformed));
    }
}
