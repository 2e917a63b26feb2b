//! Reading and verifying a nextbest governance repository: the part of
//! governed change that both the `nextbest revision` commands (which write
//! a repository) and an engine serving one (which only reads it) need.
//! It does not depend on the core library, so the core can depend on it.
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
//! author's, over the revision hash and the review report's hash; an
//! edited, inserted or deleted change-log line is found by
//! [`changelog::verify`]; [`live::live`] gives the live revision only when
//! all of that holds for it. What it does not: stop someone with write
//! access to the directory from deleting it whole, or from truncating the
//! log and rewriting `changelog.head` together; keep a copy of the head
//! hash elsewhere to catch that.
//!
//! What it does not do either: compile rules. A revision's manifest names
//! its rule set's content hash; whoever compiles the rules (the CLI, the
//! engine) checks the compiled hash against it.

#![warn(missing_docs)]

pub mod changelog;
pub mod keys;
pub mod live;
pub mod revision;
pub mod state;

mod error;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) use error::read_text;
pub use error::Error;
use keys::PublicKey;
/// The settings of a repository (`governance.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// Valid approvals a revision needs before it can be published.
    pub required: usize,
    /// The people whose approvals count (and who may publish and roll
    /// back).
    pub approvers: Vec<PublicKey>,
}

impl Governance {
    /// The approver with this public key, if listed.
    pub fn approver(&self, public_hex: &str) -> Option<&PublicKey> {
        self.approvers
            .iter()
            .find(|a| a.public_key.eq_ignore_ascii_case(public_hex))
    }

    /// Check the settings make sense.
    pub fn check(&self) -> Result<(), String> {
        if self.required == 0 {
            return Err(
                "required must be at least 1: a publish without approval is not governed".into(),
            );
        }
        if self.required > self.approvers.len() {
            return Err(format!(
                "required = {} but only {} approver(s) are listed: nothing could ever be published",
                self.required,
                self.approvers.len()
            ));
        }
        for (i, a) in self.approvers.iter().enumerate() {
            a.check()
                .map_err(|m| format!("approver `{}`: {m}", a.name))?;
            if self.approvers[..i]
                .iter()
                .any(|b| b.public_key.eq_ignore_ascii_case(&a.public_key))
            {
                return Err(format!(
                    "approver `{}`: the same key is listed twice",
                    a.name
                ));
            }
        }
        Ok(())
    }
}

/// A governance repository on disk.
pub struct Repo {
    root: PathBuf,
    /// Its settings.
    pub governance: Governance,
    /// SHA-256 of `governance.toml` as read.
    pub governance_hash: String,
}

impl Repo {
    /// Open the repository at `root` (its `governance.toml` must exist).
    pub fn open(root: &Path) -> Result<Repo, Error> {
        let path = root.join("governance.toml");
        if !path.is_file() {
            return Err(Error::refused(format!(
                "{} is not a governance repository (no governance.toml); create one with \
                 `nextbest revision init --repo {} --from RULES_DIR --approver KEY.pub ...`",
                root.display(),
                root.display()
            )));
        }
        let text = read_text(&path)?;
        let governance: Governance =
            toml::from_str(&text).map_err(|e| Error::bad_file(&path, e.message().to_string()))?;
        governance.check().map_err(|m| Error::bad_file(&path, m))?;
        Ok(Repo {
            root: root.to_path_buf(),
            governance,
            governance_hash: sha256_hex(text.as_bytes()),
        })
    }

    /// The repository's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `revisions/ID`.
    pub fn revision_dir(&self, id: &str) -> PathBuf {
        self.root.join("revisions").join(id)
    }

    /// `changelog.jsonl`.
    pub fn changelog(&self) -> PathBuf {
        self.root.join("changelog.jsonl")
    }

    /// `changelog.head`.
    pub fn head(&self) -> PathBuf {
        self.root.join("changelog.head")
    }

    /// `LIVE`.
    pub fn live_pointer(&self) -> PathBuf {
        self.root.join("LIVE")
    }

    /// `changelog.lock`: present while a `nextbest revision` command
    /// changes the repository.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("changelog.lock")
    }

    /// `evidence/`.
    pub fn evidence_dir(&self) -> PathBuf {
        self.root.join("evidence")
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The first 12 characters of a hash, for people (the whole text when it
/// is shorter or not cut at a character boundary).
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The current time, RFC 3339 in UTC, whole seconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
