//! Appending to the change log: sign the entry with the actor's key, chain
//! it to the last line and move the head. Reading and verifying the log is
//! `nextbest_governance::changelog`'s, re-exported here.

pub use nextbest_governance::changelog::*;

use super::{sha256_hex, Repo};
use crate::error::{write_atomic, CliError};
use crate::keys::KeyPair;

/// Append `entry` (signed by `signer` when given) after `entries` (the log
/// as just read under the repository lock), and move the head.
pub fn append(
    repo: &Repo,
    entries: &[Entry],
    mut entry: Entry,
    signer: Option<&KeyPair>,
) -> Result<Entry, CliError> {
    let lines = read_lines(repo)?;
    if lines.len() != entries.len() {
        return Err(CliError::refused(
            "the change log changed while this command ran; run it again",
        ));
    }
    entry.seq = entries.len() as u64 + 1;
    entry.prev = lines
        .last()
        .map_or(GENESIS.to_string(), |l| sha256_hex(l.text.as_bytes()));
    if let Some(k) = signer {
        entry.actor = k.name.clone();
        entry.actor_key = Some(k.public_hex());
        entry.signature = Some(k.sign(&entry.signed_bytes()));
    }
    let line = entry.line();
    let path = repo.changelog();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CliError::io(&path, e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| CliError::io(&path, e))?;
    }
    let head = serde_json::json!({"entries": entry.seq, "last_hash": sha256_hex(line.as_bytes())});
    write_atomic(&repo.head(), format!("{head}\n").as_bytes())?;
    Ok(entry)
}
