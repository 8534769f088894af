//! sea-orm entities: the rows as stored. Times are microseconds since the Unix
//! epoch (UTC) on both backends, so they compare and sort the same everywhere.

pub mod audit;
pub mod change;
pub mod notice;
pub mod purpose;
pub mod record;
pub mod state;
