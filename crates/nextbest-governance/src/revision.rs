//! Revisions: a self-contained copy of a rule directory plus a manifest,
//! identified by the revision hash (SHA-256 of the manifest's canonical
//! JSON, which lists every copied file's SHA-256 and the rule set's content
//! hash). The hash is what the author's log entry and every approval sign,
//! so changing any byte of a revision after it was created is detected.
//!
//! Here: the manifest and [`verify_files`]. Making revisions (copying a
//! rule directory) is the command-line tool's; checking that the copy
//! compiles to the manifest's rule set hash is whoever compiles it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{read_text, sha256_hex, Error, Repo};

/// The manifest format written here.
pub const FORMAT: u32 = 1;
/// Where a revision keeps its rule set's challenger (what the core's
/// `RuleSource::from_archive` reads).
pub const CHALLENGER: &str = "__challenger";

/// What a revision is: who made it, why, from what, and its files' hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format (1).
    pub format: u32,
    /// The revision id (`r0002`).
    pub id: String,
    /// The rule set's name.
    pub ruleset: String,
    /// The rule set's content hash: what decisions and their log records
    /// carry, so a logged decision leads to its revision.
    pub rules_hash: String,
    /// The revision this one was made against (the live one then).
    pub parent: Option<Parent>,
    /// The business request behind the change.
    pub change_request: ChangeRequest,
    /// Who built the revision.
    pub author: Author,
    /// The author's notes.
    pub notes: Option<String>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// The directory it was copied from (for the record only).
    pub source: String,
    /// Every copied file under `rules/`, by relative path, with its SHA-256.
    pub files: BTreeMap<String, String>,
}

/// A revision's parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    /// The parent's id.
    pub id: String,
    /// The parent's revision hash.
    pub revision_hash: String,
}

/// A change request: what a business user asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// One line: what changes.
    pub title: String,
    /// Why: the business objective.
    pub objective: Option<String>,
    /// Who asked for it.
    pub requested_by: String,
}

/// The author of a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// The author's name (from the key file).
    pub name: String,
    /// The author's public key, hex (none for a repository's first
    /// revision made without a key).
    pub public_key: Option<String>,
}

impl Manifest {
    /// The revision hash: SHA-256 of the manifest's compact JSON (fields in
    /// declaration order, files sorted by path).
    pub fn hash(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Read `revisions/ID/manifest.json`.
    pub fn load(repo: &Repo, id: &str) -> Result<Manifest, Error> {
        let path = repo.revision_dir(id).join("manifest.json");
        if !path.is_file() {
            return Err(Error::refused(format!(
                "no revision `{id}` in {} (see `nextbest revision log --repo {}`)",
                repo.root().display(),
                repo.root().display()
            )));
        }
        serde_json::from_str(&read_text(&path)?)
            .map_err(|e| Error::bad_file(&path, format!("not a revision manifest: {e}")))
    }
}

/// A relative path with `/` separators.
pub fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// Check revision `id` against the hash its author signed into the change
/// log: the manifest hashes to `expected`, and every file under `rules/` is
/// listed with its SHA-256 and nothing else is there. Returns the manifest;
/// the caller that compiles `rules/` checks the result against its
/// `rules_hash` (see [`tampered`] for the message).
pub fn verify_files(repo: &Repo, id: &str, expected: &str) -> Result<Manifest, Error> {
    let manifest = Manifest::load(repo, id)?;
    let dir = repo.revision_dir(id);
    let tampered = |what: String| tampered(repo, id, &what);
    let actual = manifest.hash();
    if actual != expected {
        return Err(tampered(format!(
            "manifest.json hashes to {actual}, but the change log recorded {expected} when it was created"
        )));
    }
    let rules = dir.join("rules");
    let mut found = BTreeMap::new();
    walk(&rules, &rules, &mut found)?;
    for (rel, sha) in &manifest.files {
        match found.remove(rel) {
            None => return Err(tampered(format!("rules/{rel} is missing"))),
            Some(s) if &s != sha => {
                return Err(tampered(format!(
                    "rules/{rel} has SHA-256 {s}, the manifest says {sha}"
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().next() {
        return Err(tampered(format!("rules/{extra} is not in the manifest")));
    }
    Ok(manifest)
}

/// The refusal of a tampered revision `id`, saying `what` is wrong.
pub fn tampered(repo: &Repo, id: &str, what: &str) -> Error {
    Error::refused(format!(
        "revision {id} in {} is tampered: {what}; it cannot be approved, published, served or rolled back to",
        repo.revision_dir(id).display()
    ))
}

/// Every file under `dir`, by path relative to `root`, with its SHA-256.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path: PathBuf = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let rel = path.strip_prefix(root).map(slash).unwrap_or_default();
            out.insert(rel, sha256_hex(&bytes));
        }
    }
    Ok(())
}
