//! The shipper's position: which file of the log, and where in it, the
//! first record not yet acknowledged by the broker starts.
//!
//! It is written durably (a temporary file beside it, fsynced, renamed
//! over it, and the directory fsynced), and only ever to a place before
//! which every record has been acknowledged: a crash at any point leaves
//! either the old position or the new one, each safe to resume from.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spool::{FileId, Place};
use crate::ShipError;

/// The version of the position file's format.
const FORMAT: u64 = 1;

/// Where shipping resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The format of this file (1).
    pub format: u64,
    /// The file of the log the position is in.
    pub file: FileId,
    /// Its name when the position was written (for people: the file is
    /// found by `file`, whatever it is called now).
    pub name: PathBuf,
    /// The place in it.
    #[serde(flatten)]
    pub place: Place,
    /// Records acknowledged since the position file was created.
    pub shipped: u64,
}

impl Position {
    /// A position in `file` (named `name`) at `place`.
    pub fn new(file: FileId, name: PathBuf, place: Place, shipped: u64) -> Position {
        Position {
            format: FORMAT,
            file,
            name,
            place,
            shipped,
        }
    }
}

/// The default position file of the log at `log`: hidden, beside it
/// (`DIR/.NAME.ship-position`), so that readers of the log's directory
/// do not take it for a log file.
pub fn default_path(log: &Path) -> Result<PathBuf, ShipError> {
    let (dir, base) = crate::spool::log_base(log)?;
    Ok(dir.join(format!(".{base}.ship-position")))
}

/// The position stored at `path`, or `None` if there is no file there.
pub fn load(path: &Path) -> Result<Option<Position>, ShipError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShipError::io(path, e)),
    };
    let position: Position = serde_json::from_slice(&bytes).map_err(|e| {
        ShipError::Position(format!(
            "{}: not a position file ({e}); remove it to ship the log from its oldest file",
            path.display()
        ))
    })?;
    if position.format != FORMAT {
        return Err(ShipError::Position(format!(
            "{}: position format {} (this nextbest reads format {FORMAT})",
            path.display(),
            position.format
        )));
    }
    Ok(Some(position))
}

/// Store `position` at `path` durably: when this returns `Ok`, a crash
/// leaves this position there, and before it returns, a crash leaves the
/// previous one (never a mix of both, never an empty file).
pub fn store(path: &Path, position: &Position) -> Result<(), ShipError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let bytes = serde_json::to_vec(position).map_err(|e| ShipError::Position(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| ShipError::io(path, e))
}
