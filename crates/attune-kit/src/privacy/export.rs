//! The two-part export most services page through: first the few records
//! about the customer (an account, a profile, a session), built afresh for
//! each page and paged by offset, then the rows they accumulate (ledger
//! entries, events, interactions), read page by page after a sequence.

use attune_proto::privacy::v1 as pb;

use crate::pagination::encode_page_token;

/// Where a page of a two-part export starts. Its token is `a:N` or `e:N`
/// inside [`encode_page_token`]; the first page is [`ExportCursor::default`],
/// `About(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportCursor {
    /// At this offset of the records about the customer.
    About(usize),
    /// After this sequence among the rows (sequences start at 1).
    After(i64),
}

impl Default for ExportCursor {
    fn default() -> Self {
        Self::About(0)
    }
}

impl ExportCursor {
    /// Reads the cursor inside a page token, as written by [`token`](Self::token).
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':')? {
            ("a", offset) => offset.parse().ok().map(Self::About),
            ("e", sequence) => sequence.parse().ok().map(Self::After),
            _ => None,
        }
    }

    /// The page token that starts a page here.
    pub fn token(self) -> String {
        encode_page_token(&match self {
            Self::About(offset) => format!("a:{offset}"),
            Self::After(sequence) => format!("e:{sequence}"),
        })
    }
}

/// One page of at most `limit` records of a two-part export, from `from`, and
/// where the next page starts (`None` after the last).
///
/// `about` builds the records about the customer; it is called only while the
/// page starts among them, and must list them in the same order each time.
/// `rows_after(after, count)` reads up to `count` rows with a sequence above
/// `after`, in sequence order, each with its sequence; it is asked for one row
/// more than the page has room for, which tells whether another page follows.
/// A `limit` of 0 (never a checked request's) is an empty last page.
pub async fn export_page<E>(
    from: ExportCursor,
    limit: u32,
    about: impl AsyncFnOnce() -> Result<Vec<pb::DataRecord>, E>,
    rows_after: impl AsyncFnOnce(i64, usize) -> Result<Vec<(i64, pb::DataRecord)>, E>,
) -> Result<(Vec<pb::DataRecord>, Option<ExportCursor>), E> {
    let limit = usize::try_from(limit).expect("page sizes fit in usize");
    if limit == 0 {
        return Ok((Vec::new(), None));
    }
    let (mut records, after) = match from {
        ExportCursor::After(after) => (Vec::new(), after),
        ExportCursor::About(offset) => {
            let mut about = about().await?;
            let total = about.len();
            let end = offset.saturating_add(limit).min(total);
            about.truncate(end);
            about.drain(..offset.min(end));
            if end < total {
                return Ok((about, Some(ExportCursor::About(end))));
            }
            (about, 0)
        }
    };
    let room = limit - records.len();
    let mut rows = rows_after(after, room + 1).await?;
    let more = rows.len() > room;
    rows.truncate(room);
    let last = rows.last().map_or(after, |(sequence, _)| *sequence);
    records.extend(rows.into_iter().map(|(_, record)| record));
    Ok((records, more.then_some(ExportCursor::After(last))))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use super::*;
    use crate::pagination::decode_page_token;

    fn record(id: &str) -> pb::DataRecord {
        pb::DataRecord {
            kind: "test".to_owned(),
            id: id.to_owned(),
            update_time: None,
            data: None,
        }
    }

    /// An export of `about` records named `a0`, `a1`, … and rows with the
    /// sequences `rows`, named `e<sequence>`.
    struct Export {
        about: usize,
        rows: Vec<i64>,
    }

    fn export_of(about: usize, rows: &[i64]) -> Export {
        Export {
            about,
            rows: rows.to_vec(),
        }
    }

    impl Export {
        async fn page(
            &self,
            from: ExportCursor,
            limit: u32,
        ) -> (Vec<String>, Option<ExportCursor>) {
            let (records, next) = export_page(
                from,
                limit,
                async || {
                    Ok::<_, Infallible>((0..self.about).map(|n| record(&format!("a{n}"))).collect())
                },
                async |after, count| {
                    Ok(self
                        .rows
                        .iter()
                        .filter(|sequence| **sequence > after)
                        .take(count)
                        .map(|sequence| (*sequence, record(&format!("e{sequence}"))))
                        .collect())
                },
            )
            .await
            .unwrap();
            assert!(records.len() <= limit as usize, "{records:?}");
            (records.into_iter().map(|r| r.id).collect(), next)
        }

        /// Every page from the first, as the ids of each page.
        async fn pages(&self, limit: u32) -> Vec<Vec<String>> {
            let mut pages = Vec::new();
            let mut from = ExportCursor::default();
            loop {
                let (page, next) = self.page(from, limit).await;
                pages.push(page);
                match next {
                    // Through the token, as a client pages.
                    Some(next) => {
                        let token = next.token();
                        let cursor = decode_page_token("page_token", &token).unwrap().unwrap();
                        from = ExportCursor::parse(&cursor).unwrap();
                        assert_eq!(from, next);
                    }
                    None => return pages,
                }
            }
        }
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[tokio::test]
    async fn about_records_split_across_pages_then_rows_follow_in_the_same_page() {
        let export = export_of(5, &[3, 7, 8]);
        assert_eq!(
            export.pages(2).await,
            [
                ids(&["a0", "a1"]),
                ids(&["a2", "a3"]),
                ids(&["a4", "e3"]),
                ids(&["e7", "e8"]),
            ]
        );
        assert_eq!(
            export.page(ExportCursor::About(2), 2).await.1,
            Some(ExportCursor::About(4))
        );
        assert_eq!(
            export.page(ExportCursor::About(4), 2).await.1,
            Some(ExportCursor::After(3))
        );
    }

    #[tokio::test]
    async fn exactly_a_page_of_rows_is_the_last_page() {
        let export = export_of(1, &[1, 2]);
        assert_eq!(
            export.page(ExportCursor::default(), 3).await,
            (ids(&["a0", "e1", "e2"]), None)
        );
        assert_eq!(
            export.page(ExportCursor::After(0), 2).await,
            (ids(&["e1", "e2"]), None)
        );
        // A page the about records fill exactly still looks for rows.
        let export = export_of(2, &[4]);
        assert_eq!(
            export.page(ExportCursor::default(), 2).await,
            (ids(&["a0", "a1"]), Some(ExportCursor::After(0)))
        );
        let export = export_of(2, &[]);
        assert_eq!(
            export.page(ExportCursor::default(), 2).await,
            (ids(&["a0", "a1"]), None)
        );
    }

    #[tokio::test]
    async fn a_page_of_one_never_holds_two_records() {
        let export = export_of(1, &[5, 6]);
        assert_eq!(
            export.pages(1).await,
            [ids(&["a0"]), ids(&["e5"]), ids(&["e6"])]
        );
    }

    #[tokio::test]
    async fn without_about_records_the_rows_start_at_once() {
        let export = export_of(0, &[2, 9, 11]);
        assert_eq!(export.pages(2).await, [ids(&["e2", "e9"]), ids(&["e11"])]);
        let empty = export_of(0, &[]);
        assert_eq!(empty.pages(2).await, [Vec::<String>::new()]);
    }

    #[tokio::test]
    async fn about_records_are_built_only_while_a_page_starts_among_them() {
        let built = Cell::new(0);
        let (records, next) = export_page(
            ExportCursor::After(0),
            10,
            async || {
                built.set(built.get() + 1);
                Ok::<_, Infallible>(vec![record("a0")])
            },
            async |_, _| Ok(Vec::new()),
        )
        .await
        .unwrap();
        assert_eq!((records, next, built.get()), (Vec::new(), None, 0));
    }

    #[tokio::test]
    async fn rows_are_read_one_beyond_the_room_left() {
        let asked = Cell::new(None);
        export_page(
            ExportCursor::default(),
            5,
            async || Ok::<_, Infallible>(vec![record("a0"), record("a1")]),
            async |after, count| {
                asked.set(Some((after, count)));
                Ok(Vec::new())
            },
        )
        .await
        .unwrap();
        assert_eq!(asked.get(), Some((0, 4)));
    }

    #[tokio::test]
    async fn an_offset_past_the_about_records_goes_on_with_the_rows() {
        // The about records shrank between pages (one was deleted).
        let export = export_of(1, &[1]);
        assert_eq!(
            export.page(ExportCursor::About(3), 2).await,
            (ids(&["e1"]), None)
        );
    }

    #[tokio::test]
    async fn a_limit_of_zero_is_an_empty_last_page() {
        let export = export_of(1, &[1]);
        assert_eq!(
            export.page(ExportCursor::default(), 0).await,
            (Vec::new(), None)
        );
    }

    #[test]
    fn cursors_round_trip_through_their_tokens() {
        for cursor in [
            ExportCursor::About(0),
            ExportCursor::About(17),
            ExportCursor::After(0),
            ExportCursor::After(i64::MAX),
        ] {
            let text = decode_page_token("page_token", &cursor.token())
                .unwrap()
                .unwrap();
            assert_eq!(ExportCursor::parse(&text), Some(cursor), "{text}");
        }
        // The tokens loyalty and profile handed out before the cursor was shared.
        assert_eq!(ExportCursor::parse("a:3"), Some(ExportCursor::About(3)));
        assert_eq!(ExportCursor::parse("e:42"), Some(ExportCursor::After(42)));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for text in [
            "", "x:1", "a:-1", "a:", "e:abc", "e:", "a1", "e:1:2", "A:1", "i:5",
        ] {
            assert_eq!(ExportCursor::parse(text), None, "{text}");
        }
    }
}
