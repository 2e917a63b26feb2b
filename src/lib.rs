//! # nextbest
//!
//! Real-time next-best-action decisioning, in process, in microseconds.
//!
//! Given a customer's context and a channel, nextbest evaluates engagement
//! policies (eligibility, applicability, suitability) at group and action
//! level, ranks the surviving actions by `priority = P × C × V × L`
//! (propensity × context weight × value × lever) and returns the top N with
//! the treatment for the channel, and, on request, why every other action
//! lost.
//!
//! Rules live in a directory of TOML files (see the README for the format);
//! conditions are written in a subset of rhai expression syntax and compiled
//! into typed trees over the context's slots when the rule set loads.
//!
//! ```
//! use nextbest::{Context, DecisionRequest, Engine};
//!
//! let engine = Engine::from_dir("rules/retail_bank")?;
//! let ctx = Context::builder(&engine.schema())
//!     .set("age", 34)
//!     .set("income", 52_000.0)
//!     .set("segment", "affluent")
//!     .set("tenure_months", 40)
//!     .set("products", ["CURRENT"])
//!     .set("call_reason", "cancellation")
//!     .build()?;
//! let request = DecisionRequest::new("C1", "call_center", ctx).explain(true);
//! let decision = engine.decide(&request)?;
//! for a in decision.actions() {
//!     println!("{} {} {:.3} {}", a.rank(), a.action(), a.priority(), a.treatment());
//! }
//! for f in decision.filtered() {
//!     println!("{} removed at {}: {:?}", f.action(), f.stage(), f.condition());
//! }
//! # Ok::<(), nextbest::Error>(())
//! ```

#![warn(missing_docs)]

// The layers, bottom up: each module imports only from the modules above
// it in this list (tests/layers.rs checks it). See docs/ARCHITECTURE.md.
pub mod audit;
pub(crate) mod base;
mod context;
mod decide;
mod engine;
mod expr;
pub mod ruleset;
pub mod state;
pub mod tools;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use base::{
    channel_key, key, Arm, AttrType, ControlMode, DecisionId, Direction, Error, Level, Location,
    Outcome, OutcomeKind, RuleError, RuleErrors, Stage, Timestamp, Value,
};
pub use context::schema::{Attribute, Schema};
pub use context::{Context, ContextBuilder, RequestWarning};
pub use decide::decision::{Decision, FilteredAction, ModelUse, RankedAction};
pub use decide::request::{DecisionRequest, MAX_LIMIT};
pub use decide::version::Version;
pub use decide::{Mode, ReplayState, Scratch};
pub use engine::{
    ArmCounts, Engine, EngineConfig, EngineOptions, EngineStats, GovernanceStats, VersionInfo,
    Watcher,
};
#[cfg(feature = "redis")]
pub use engine::{FleetFollower, FollowStatus};
pub use ruleset::strategy::{Diagnostic, Limits as ScriptLimits};
pub use ruleset::{RuleSet, RuleSource};
#[cfg(any(test, feature = "fuzzing"))]
pub use tools::fuzzing;
pub use tools::{diff, persona, simulate};

/// docs/DECISIONS.md's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/DECISIONS.md")]
struct DecisionsDoctests;

/// docs/DECISION_LOG.md's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/DECISION_LOG.md")]
struct DecisionLogDoctests;
