//! What recommendation knows about customers, without tonic or sea-orm:
//! interactions (with their weights) and session state.

mod interaction;
mod session;

pub use interaction::{Interaction, Signal};
pub use session::{Session, SessionChange};
