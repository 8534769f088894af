//! Request fingerprints: what makes "the same request" checkable on replay.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A digest of everything a write request says except its request id (commands
/// mark that field `#[serde(skip)]`): a retry with the same id must carry the same
/// fingerprint, or it is a different request.
pub fn fingerprint(command: &impl Serialize) -> String {
    let canonical =
        serde_json::to_vec(command).expect("commands hold only strings, numbers and times");
    hex::encode(Sha256::digest(canonical))
}
