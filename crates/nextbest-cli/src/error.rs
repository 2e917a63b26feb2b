//! The errors of the governance, review and impact commands: what went
//! wrong and where, in words a user can act on.

use std::fmt;
use std::path::Path;

/// An error of a command of this crate.
#[derive(Debug)]
pub enum CliError {
    /// An error of the core library (rules, requests, logs).
    Core(nextbest::Error),
    /// A file that cannot be read or written, one whose content is wrong,
    /// or a refusal with its reason: the governance crate's error, whose
    /// cases are the ones every command here needs.
    Governance(nextbest_governance::Error),
    /// An error of the Kafka shipper (`nextbest ship`).
    #[cfg(feature = "kafka")]
    Ship(nextbest_ship::ShipError),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> CliError {
        CliError::Governance(nextbest_governance::Error::io(path, source))
    }

    /// A file whose content is wrong.
    pub fn bad_file(path: impl AsRef<Path>, message: impl Into<String>) -> CliError {
        CliError::Governance(nextbest_governance::Error::bad_file(path, message))
    }

    /// A refusal, with the reason.
    pub fn refused(message: impl Into<String>) -> CliError {
        CliError::Governance(nextbest_governance::Error::refused(message))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Core(e) => write!(f, "{e}"),
            CliError::Governance(e) => write!(f, "{e}"),
            #[cfg(feature = "kafka")]
            CliError::Ship(e) => write!(f, "ship: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<nextbest::Error> for CliError {
    fn from(e: nextbest::Error) -> CliError {
        CliError::Core(e)
    }
}

#[cfg(feature = "kafka")]
impl From<nextbest_ship::ShipError> for CliError {
    fn from(e: nextbest_ship::ShipError) -> CliError {
        CliError::Ship(e)
    }
}

impl From<nextbest_governance::Error> for CliError {
    fn from(e: nextbest_governance::Error) -> CliError {
        CliError::Governance(e)
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
