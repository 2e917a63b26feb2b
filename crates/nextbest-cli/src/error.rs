//! The errors of the governance, review and impact commands: what went
//! wrong and where, in words a user can act on.

use std::fmt;
use std::path::{Path, PathBuf};

/// An error of a command of this crate.
#[derive(Debug)]
pub enum CliError {
    /// An error of the core library (rules, requests, logs).
    Core(nextbest::Error),
    /// Reading or writing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but its content is not what it must be.
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The command was refused (a governance rule, a state, an argument).
    Refused(String),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> CliError {
        CliError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A file whose content is wrong.
    pub fn bad_file(path: impl AsRef<Path>, message: impl Into<String>) -> CliError {
        CliError::BadFile {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A refusal, with the reason.
    pub fn refused(message: impl Into<String>) -> CliError {
        CliError::Refused(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Core(e) => write!(f, "{e}"),
            CliError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CliError::BadFile { path, message } => write!(f, "{}: {message}", path.display()),
            CliError::Refused(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<nextbest::Error> for CliError {
    fn from(e: nextbest::Error) -> CliError {
        CliError::Core(e)
    }
}

impl From<nextbest_governance::Error> for CliError {
    fn from(e: nextbest_governance::Error) -> CliError {
        match e {
            nextbest_governance::Error::Io { path, source } => CliError::Io { path, source },
            nextbest_governance::Error::BadFile { path, message } => {
                CliError::BadFile { path, message }
            }
            nextbest_governance::Error::Refused(m) => CliError::Refused(m),
            other => CliError::Refused(other.to_string()),
        }
    }
}

/// Read a file to a string, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))
}

/// Write `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| CliError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CliError::io(path, e))
}
