//! Experiments as stored (the encoded message, whether it runs) and the answers
//! served under them (recommendation id and variant, no customer id).

use attune_proto::recommendation::v1 as pb;
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

use crate::impressions::Impression;

const TABLE: &str = "recommendation_experiments";
const EXPERIMENT_ID: &str = "experiment_id";
const DATA: &str = "data";
const RUNNING: &str = "running";
const UPDATE_TIME: &str = "update_time";

const IMPRESSIONS: &str = "recommendation_impressions";
const RECOMMENDATION_ID: &str = "recommendation_id";
const VARIANT: &str = "variant";
const CREATE_TIME: &str = "create_time";

fn decode(bytes: &[u8]) -> Result<pb::Experiment, DbErr> {
    pb::Experiment::decode(bytes)
        .map_err(|e| DbErr::Custom(format!("stored experiment unreadable: {e}")))
}

/// Stores `experiment`; when it runs, every other one stops.
pub async fn put(
    db: &impl ConnectionTrait,
    experiment: &pb::Experiment,
    update_time: i64,
) -> Result<(), DbErr> {
    if experiment.running {
        let stop = Query::update()
            .table(TABLE)
            .value(RUNNING, false)
            .and_where(Expr::col(EXPERIMENT_ID).ne(experiment.experiment_id.as_str()))
            .to_owned();
        db.execute(&stop).await?;
    }
    let insert = Query::insert()
        .into_table(TABLE)
        .columns([EXPERIMENT_ID, DATA, RUNNING, UPDATE_TIME])
        .values_panic([
            experiment.experiment_id.clone().into(),
            experiment.encode_to_vec().into(),
            experiment.running.into(),
            update_time.into(),
        ])
        .on_conflict(
            OnConflict::column(EXPERIMENT_ID)
                .update_columns([DATA, RUNNING, UPDATE_TIME])
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}

/// The experiment `experiment_id`, as stored (its `running` from the column).
pub async fn get(
    db: &impl ConnectionTrait,
    experiment_id: &str,
) -> Result<Option<pb::Experiment>, DbErr> {
    let select = Query::select()
        .columns([DATA, RUNNING])
        .from(TABLE)
        .and_where(Expr::col(EXPERIMENT_ID).eq(experiment_id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let mut experiment = decode(&row.try_get::<Vec<u8>>("", DATA)?)?;
    experiment.running = row.try_get("", RUNNING)?;
    Ok(Some(experiment))
}

/// The running experiment, if any.
pub async fn running(db: &impl ConnectionTrait) -> Result<Option<pb::Experiment>, DbErr> {
    let select = Query::select()
        .column(DATA)
        .from(TABLE)
        .and_where(Expr::col(RUNNING).eq(true))
        .to_owned();
    match db.query_one(&select).await? {
        Some(row) => decode(&row.try_get::<Vec<u8>>("", DATA)?).map(Some),
        None => Ok(None),
    }
}

/// Records each impression (which variant served which recommendation id); an
/// id already recorded keeps its row.
pub async fn record_impressions(
    db: &impl ConnectionTrait,
    impressions: &[Impression],
) -> Result<(), DbErr> {
    if impressions.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert.into_table(IMPRESSIONS).columns([
        RECOMMENDATION_ID,
        EXPERIMENT_ID,
        VARIANT,
        CREATE_TIME,
    ]);
    for impression in impressions {
        insert.values_panic([
            impression.recommendation_id.as_str().into(),
            impression.experiment_id.as_str().into(),
            impression.variant.as_str().into(),
            impression.create_time.into(),
        ]);
    }
    insert.on_conflict(
        OnConflict::column(RECOMMENDATION_ID)
            .do_nothing()
            .to_owned(),
    );
    db.execute(&insert).await?;
    Ok(())
}

/// Every impression of `experiment_id`: (recommendation id, variant).
pub async fn impressions(
    db: &impl ConnectionTrait,
    experiment_id: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let select = Query::select()
        .columns([RECOMMENDATION_ID, VARIANT])
        .from(IMPRESSIONS)
        .and_where(Expr::col(EXPERIMENT_ID).eq(experiment_id))
        .to_owned();
    db.query_all(&select)
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                row.try_get("", RECOMMENDATION_ID)?,
                row.try_get("", VARIANT)?,
            ))
        })
        .collect()
}
