//! Offline tools over the engine: simulation, persona tests, diffs, replay,
//! off-policy evaluation, and the fuzzing entry points. They use only the
//! layers below; they are what the command line runs.

pub mod diff;
pub mod evaluate;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod persona;
pub mod replay;
pub mod simulate;
