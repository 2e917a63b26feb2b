//! The crate's one error type, and the located errors of rule loading.

use std::fmt;
use std::path::PathBuf;

/// A position in a rule file: file, 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file, relative to the rule directory when loaded from one.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a rule set, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Where the author must look.
    pub location: Location,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found while loading a rule set (validation reports all of
/// them at once, sorted by location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl RuleErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[RuleError] {
        &self.0
    }
}

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "rule set has {n} error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in nextbest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rule set did not load; nothing was published.
    #[error("{0}")]
    Rules(RuleErrors),
    /// A context attribute has the wrong type or a value outside its
    /// allowed values.
    #[error("context attribute `{attribute}`: {message}")]
    InvalidContext {
        /// The attribute name as given.
        attribute: String,
        /// What is wrong with it.
        message: String,
    },
    /// A request is malformed (bad JSON, missing field, bad limit...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request names a channel the rule set does not declare.
    #[error("unknown channel `{channel}`; this rule set has {known}")]
    UnknownChannel {
        /// The channel as given.
        channel: String,
        /// The declared channels.
        known: String,
    },
    /// The engine configuration is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// There is no version to roll back to.
    #[error("cannot roll back: {0}")]
    Rollback(String),
    /// Engine state (interaction history, learning) could not be saved or
    /// loaded, or the file is damaged.
    #[error("engine state: {0}")]
    State(String),
    /// A governance repository's live revision may not be served (it is
    /// unapproved, tampered, or the repository is damaged); nothing was
    /// published. The message says why and where.
    #[error("governance: {0}")]
    Governance(String),
    /// A shared state store (the fleet's Redis, say) did not answer in
    /// time, refused the connection or dropped it. Nothing was changed by
    /// the failed call; retrying later is safe. See docs/FLEET.md for what
    /// a decision does then (`on_unavailable`).
    #[error("state store `{store}` unavailable during {operation}: {message}")]
    StoreUnavailable {
        /// Which store: its kind and address (`redis://127.0.0.1:6379/0`).
        store: String,
        /// The call that failed (`recent`, `record_within_limit`...).
        operation: &'static str,
        /// What the store's client said.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The rule errors, if this is a rule-loading error.
    pub fn rule_errors(&self) -> Option<&[RuleError]> {
        match self {
            Error::Rules(r) => Some(&r.0),
            _ => None,
        }
    }
}

/// Why a condition could not be evaluated. Small and `Copy` so that
/// `Result<i64, EvalError>` stays two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// The attribute in this slot is missing from the request.
    Missing(u16),
    /// Integer overflow (including `abs` and negation of the minimum).
    Overflow,
    /// Integer division or remainder by zero.
    DivisionByZero,
}
