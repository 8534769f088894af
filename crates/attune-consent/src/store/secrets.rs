//! Secrets consent generates once and keeps in its own database.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use super::entity::secret;
use crate::domain::PseudonymKey;
use crate::error::ConsentError;

const PSEUDONYM_KEY: &str = "pseudonym_key";

/// The pseudonymisation key, generated on first use. Every process of a
/// deployment shares the database, so concurrent first starts race on one
/// insert-if-absent and all read back the winner's key.
pub async fn pseudonym_key(db: &impl ConnectionTrait) -> Result<PseudonymKey, ConsentError> {
    let mut fresh = [0_u8; 32];
    getrandom::fill(&mut fresh)
        .map_err(|error| ConsentError::Corrupt(format!("no randomness for a key: {error}")))?;
    secret::Entity::insert(secret::ActiveModel {
        name: Set(PSEUDONYM_KEY.to_owned()),
        value: Set(PseudonymKey::new(fresh).to_hex()),
    })
    .on_conflict(
        OnConflict::column(secret::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let stored = secret::Entity::find_by_id(PSEUDONYM_KEY.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| ConsentError::Corrupt("the pseudonymisation key vanished".to_owned()))?;
    PseudonymKey::from_hex(&stored.value)
        .ok_or_else(|| ConsentError::Corrupt("the stored pseudonymisation key".to_owned()))
}
