//! Engine state that decisions read and change: the customers' interaction
//! history, volume-constraint counters and learning counts, and what the
//! history means for contact policies and channel limits; and, for a fleet
//! of engines, the shared store that holds the history and the volume
//! counters (`redis`).

pub(crate) mod contact;
pub(crate) mod counters;
pub mod exchange;
pub mod fleet;
pub mod history;
pub mod learning;
#[cfg(feature = "redis")]
pub mod redis;
pub(crate) mod responses;
pub mod volumes;
