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

mod arbitration;
pub mod audit;
mod context;
mod decision;
pub mod diff;
mod engine;
mod error;
mod expr;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
mod learning;
mod outcome;
pub mod persona;
mod policy;
pub mod ruleset;
mod script;
pub mod simulate;
mod util;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use context::{Context, ContextBuilder, Timestamp, Value};
pub use decision::{
    Arm, Decision, DecisionId, DecisionRequest, FilteredAction, RankedAction, MAX_LIMIT,
};
pub use engine::{
    ArmCounts, Engine, EngineConfig, EngineOptions, EngineStats, Version, VersionInfo, Watcher,
};
pub use error::{Error, Location, RuleError, RuleErrors};
pub use outcome::{Outcome, OutcomeKind};
pub use ruleset::{
    AttrType, Attribute, ControlMode, Direction, Level, RuleSet, RuleSource, Schema, Stage,
};
pub use script::{Diagnostic, Limits as ScriptLimits};

/// docs/DECISIONS.md's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/DECISIONS.md")]
struct DecisionsDoctests;

/// docs/DECISION_LOG.md's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/DECISION_LOG.md")]
struct DecisionLogDoctests;
