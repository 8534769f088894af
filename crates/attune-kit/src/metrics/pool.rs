//! Database pool usage on the global meter, read from sqlx's pool at collection:
//!
//! - `attune.db.pool.connections` (`attune_db_pool_connections`), labelled
//!   `pool` and `state` = `in_use` or `idle`;
//! - `attune.db.pool.max_connections` (`attune_db_pool_max_connections`), the
//!   pool's bound, labelled `pool`.
//!
//! `pool` names what the pool serves: the role of `attune serve` (`all`,
//! `gateway`, or a service), so that a dashboard compares services. Pools of one
//! name (several in one test process) are summed. A pool is held weakly: once
//! the process drops its connection, it stops being reported.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{PgPool, SqlitePool};

/// Usage of one pool, or of every pool of one name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections checked out to a query or transaction.
    pub in_use: u64,
    /// Connections open and waiting in the pool.
    pub idle: u64,
    /// The most connections the pool opens.
    pub max: u64,
}

/// A pool the instruments report on. sqlx pools are handles on shared state, so
/// a clone held here sees every checkout; it is closed by its owner.
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    fn of(db: &DatabaseConnection) -> Option<Self> {
        use sea_orm::DatabaseConnectionType as Type;
        match &db.inner {
            Type::SqlxSqlitePoolConnection(_) => {
                Some(Self::Sqlite(db.get_sqlite_connection_pool().clone()))
            }
            Type::SqlxPostgresPoolConnection(_) => {
                Some(Self::Postgres(db.get_postgres_connection_pool().clone()))
            }
            _ => None,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Self::Sqlite(pool) => pool.is_closed(),
            Self::Postgres(pool) => pool.is_closed(),
        }
    }

    fn usage(&self) -> PoolUsage {
        let (size, idle, max) = match self {
            Self::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Self::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        let idle = u64::try_from(idle).unwrap_or(u64::MAX);
        PoolUsage {
            // `size` and `num_idle` are read apart: never report less than nothing.
            in_use: u64::from(size).saturating_sub(idle),
            idle,
            max: u64::from(max),
        }
    }
}

type Pools = Mutex<Vec<(&'static str, Pool)>>;

static POOLS: OnceLock<Pools> = OnceLock::new();

/// Reports `db`'s pool as `pool` from now until it is closed.
pub fn observe(db: &DatabaseConnection, pool: &'static str) {
    let Some(observed) = Pool::of(db) else {
        return;
    };
    let pools = POOLS.get_or_init(|| {
        register_instruments(&opentelemetry::global::meter("attune"));
        Mutex::new(Vec::new())
    });
    let mut pools = pools.lock().unwrap_or_else(PoisonError::into_inner);
    pools.retain(|(_, pool)| !pool.is_closed());
    pools.push((pool, observed));
}

/// The usage of every observed pool still open, summed per name.
pub fn usage() -> BTreeMap<&'static str, PoolUsage> {
    let mut by_name = BTreeMap::<&'static str, PoolUsage>::new();
    let Some(pools) = POOLS.get() else {
        return by_name;
    };
    let pools = pools.lock().unwrap_or_else(PoisonError::into_inner);
    for (name, pool) in pools.iter().filter(|(_, pool)| !pool.is_closed()) {
        let usage = pool.usage();
        let total = by_name.entry(name).or_default();
        total.in_use += usage.in_use;
        total.idle += usage.idle;
        total.max += usage.max;
    }
    by_name
}

fn register_instruments(meter: &Meter) {
    meter
        .u64_observable_gauge("attune.db.pool.connections")
        .with_description("Database connections of a pool, in use or idle")
        .with_unit("{connection}")
        .with_callback(|observer| {
            for (pool, usage) in usage() {
                for (state, value) in [("in_use", usage.in_use), ("idle", usage.idle)] {
                    observer.observe(
                        value,
                        &[KeyValue::new("pool", pool), KeyValue::new("state", state)],
                    );
                }
            }
        })
        .build();
    meter
        .u64_observable_gauge("attune.db.pool.max_connections")
        .with_description("The most connections a database pool opens")
        .with_unit("{connection}")
        .with_callback(|observer| {
            for (pool, usage) in usage() {
                observer.observe(usage.max, &[KeyValue::new("pool", pool)]);
            }
        })
        .build();
}
