//! Page tokens of an answer: the answer's id and a short hash of every item
//! already returned, so the next page recomputes the ranking and skips them —
//! never a repeat, even when the ranking moved in between (a new event, a new
//! model). 3 bytes per item keep a token of 150 items under the kit's bound.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Items an answer returns over all its pages at most.
pub const MAX_ITEMS: usize = 150;

/// An item's short hash.
pub type Mark = [u8; 3];

/// The hash of `item_id`.
pub fn mark(item_id: &str) -> Mark {
    let digest = Sha256::digest(item_id.as_bytes());
    [digest[0], digest[1], digest[2]]
}

/// Where the next page of an answer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub recommendation_id: String,
    pub shown: Vec<Mark>,
}

impl Page {
    /// The cursor text inside a page token.
    pub fn cursor(&self) -> String {
        let bytes: Vec<u8> = self.shown.iter().flatten().copied().collect();
        format!(
            "{}.{}",
            self.recommendation_id,
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// The page a cursor names.
    pub fn parse(cursor: &str) -> Option<Self> {
        let (id, marks) = cursor.split_once('.')?;
        uuid::Uuid::parse_str(id).ok()?;
        let bytes = URL_SAFE_NO_PAD.decode(marks).ok()?;
        if bytes.len() % 3 != 0 || bytes.len() / 3 > MAX_ITEMS {
            return None;
        }
        Some(Self {
            recommendation_id: id.to_owned(),
            shown: bytes.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cursor_fits_a_token_and_reads_back() {
        let page = Page {
            recommendation_id: uuid::Uuid::new_v4().to_string(),
            shown: (0..MAX_ITEMS).map(|n| mark(&format!("item-{n}"))).collect(),
        };
        let token = attune_kit::pagination::encode_page_token(&page.cursor());
        let cursor = attune_kit::pagination::decode_page_token("page_token", &token)
            .expect("the token is ours")
            .expect("not the first page");
        assert_eq!(Page::parse(&cursor), Some(page));
    }
}
