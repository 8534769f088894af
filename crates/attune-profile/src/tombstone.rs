//! Tombstones of erased customers: keyed hashes of an erased customer id and of
//! each of its identities, so that a later replay of the customer's profile,
//! identities or events is refused instead of bringing the customer back.
//!
//! Erasure writes them (`profile_tombstones`); creating a profile and linking an
//! identity check them.

use attune_kit::secrets::PseudonymKey;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{ConnectionTrait, DbErr};

use crate::identity::StoredIdentity;

/// The tombstone table.
pub(crate) const TABLE: &str = "profile_tombstones";

/// The tombstone digest of a customer id.
pub(crate) fn customer_digest(key: &PseudonymKey, customer_id: &str) -> String {
    key.digest("customer", customer_id)
}

/// The tombstone digest of an identity as stored (`<type number>:<stored value>`,
/// so an e-mail's digest is taken over its keyed hash, never the clear address).
pub(crate) fn identity_digest(key: &PseudonymKey, identity: &StoredIdentity) -> String {
    key.digest(
        "identity",
        &format!("{}:{}", identity.identity_type, identity.value),
    )
}

/// Whether any of `digests` has a tombstone.
pub(crate) async fn is_tombstoned(
    db: &impl ConnectionTrait,
    digests: &[String],
) -> Result<bool, DbErr> {
    if digests.is_empty() {
        return Ok(false);
    }
    let query = Query::select()
        .expr_as(
            Func::count(Expr::col(Alias::new("subject_hash"))),
            Alias::new("n"),
        )
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("subject_hash")).is_in(digests.iter().cloned()))
        .to_owned();
    let row = db.query_one(&query).await?;
    let count: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_and_identity_digests_never_collide() {
        let key = PseudonymKey::new([3; 32]);
        let identity = StoredIdentity {
            identity_type: 3,
            value: "C-1".into(),
        };
        assert_ne!(
            customer_digest(&key, "3:C-1"),
            identity_digest(&key, &identity)
        );
        assert_eq!(
            identity_digest(&key, &identity),
            identity_digest(&key, &identity)
        );
    }
}
