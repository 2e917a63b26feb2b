//! Engine state that decisions read and change: the customers' interaction
//! history, volume-constraint counters and learning counts, and what the
//! history means for contact policies and channel limits.

pub(crate) mod contact;
pub(crate) mod counters;
pub mod history;
pub(crate) mod learning;
