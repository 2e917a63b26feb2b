//! Governed change: a governance repository of rule revisions, their
//! approvals and an append-only, hash-chained change log
//! (`nextbest revision init|new|submit|approve|reject|publish|rollback|log|show`).
//!
//! Reading and verifying a repository is the `nextbest-governance` crate's
//! (an engine serving a repository uses it too); this module writes one:
//! it makes revisions, signs and appends change-log entries and moves the
//! live pointer.
//!
//! A repository is a directory:
//!
//! ```text
//! governance.toml         approvers' public keys and how many approvals a publish needs
//! revisions/r0001/        one directory per revision:
//!   manifest.json         id, parent, change request, author, notes, created at,
//!                         the rule set's content hash and every file's SHA-256
//!   rules/                a copy of the rule files (a challenger under rules/__challenger/)
//! changelog.jsonl         the change log: one JSON line per event, chained by hash
//! changelog.head          the number of entries and the last entry's hash
//! LIVE                    the live revision (JSON), replaced atomically on publish and rollback
//! evidence/SHA256.html    the review reports approvals were signed over
//! ```
//!
//! What it guarantees: a revision whose files or manifest changed after it
//! was created is refused (its hash no longer matches the one its author
//! signed into the log); a publish needs `required` valid approvals, each an
//! ed25519 signature by a key listed in `governance.toml` that is not the
//! author's, over the revision hash and the review report's hash; every
//! refused publish is logged; an edited, inserted or deleted change-log line
//! is found by `nextbest revision log --verify`. What it does not: stop
//! someone with write access to the directory from deleting it whole, or
//! from truncating the log and rewriting `changelog.head` together; keep a
//! copy of the head hash that `log --verify` prints elsewhere to catch that.

pub mod changelog;
pub mod commands;
pub mod revision;

pub use nextbest_governance::{now_rfc3339, sha256_hex, short, state, Governance, Repo};

use std::path::PathBuf;

use crate::error::CliError;

/// Holds `changelog.lock` while one command reads and appends to a
/// repository, so two commands never fork the chain; removed on drop.
pub struct RepoLock {
    path: PathBuf,
}

impl RepoLock {
    /// Take the lock, waiting up to 10 seconds for another command.
    pub fn take(repo: &Repo) -> Result<RepoLock, CliError> {
        let path = repo.lock_path();
        for _ in 0..100 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(RepoLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(CliError::io(&path, e)),
            }
        }
        Err(CliError::refused(format!(
            "{} exists: another `nextbest revision` command is running, or one was killed; \
             if none is running, remove the file",
            path.display()
        )))
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
