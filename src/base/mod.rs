//! The bottom layer: plain types every other layer shares (stages, levels,
//! arms, ids, timestamps, values, scored candidates, outcomes, errors) and
//! small utilities. It imports nothing from the crate above it.

pub(crate) mod error;
pub(crate) mod ids;
pub(crate) mod outcome;
pub(crate) mod scored;
pub(crate) mod stage;
pub(crate) mod time;
pub(crate) mod util;
pub(crate) mod value;

pub(crate) use error::EvalError;
pub use error::{Error, Location, RuleError, RuleErrors};
pub use ids::{channel_key, key, Arm, DecisionId};
pub use outcome::{Outcome, OutcomeKind};
pub(crate) use scored::{Blocked, Removed, Scored};
pub use stage::{ControlMode, Direction, Level, Stage};
pub use time::Timestamp;
pub(crate) use value::Sym;
pub use value::{AttrType, Value};
