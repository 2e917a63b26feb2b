//! Revisions: a self-contained copy of a rule directory plus a manifest,
//! identified by the revision hash (SHA-256 of the manifest's canonical
//! JSON, which lists every copied file's SHA-256 and the rule set's content
//! hash). The hash is what the author's log entry and every approval sign,
//! so changing any byte of a revision after it was created is detected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nextbest::{RuleSet, RuleSource};
use serde::{Deserialize, Serialize};

use super::{sha256_hex, Repo};
use crate::error::{read_text, CliError};

/// The manifest format written here.
pub const FORMAT: u32 = 1;
/// Where a revision keeps its rule set's challenger (what
/// [`RuleSource::from_archive`] reads).
const CHALLENGER: &str = "__challenger";

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
    pub fn load(repo: &Repo, id: &str) -> Result<Manifest, CliError> {
        let path = repo.revision_dir(id).join("manifest.json");
        if !path.is_file() {
            return Err(CliError::refused(format!(
                "no revision `{id}` in {} (see `nextbest revision log --repo {}`)",
                repo.root().display(),
                repo.root().display()
            )));
        }
        serde_json::from_str(&read_text(&path)?)
            .map_err(|e| CliError::bad_file(&path, format!("not a revision manifest: {e}")))
    }
}

/// The rule files of `dir` as a revision keeps them: the rule set's files
/// (what its content hash covers), its challenger's under `__challenger/`,
/// and its personas (rule tests, so the revision can be tested alone).
pub fn rule_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, CliError> {
    let src = RuleSource::from_dir(dir)?;
    let mut files = BTreeMap::new();
    for (p, text) in src.files() {
        files.insert(slash(p), text.as_bytes().to_vec());
    }
    if let Some(ch) = src.challenger_source() {
        for (p, text) in ch.files() {
            files.insert(
                format!("{CHALLENGER}/{}", slash(p)),
                text.as_bytes().to_vec(),
            );
        }
    }
    let personas = dir.join("personas");
    if personas.is_dir() {
        for entry in std::fs::read_dir(&personas).map_err(|e| CliError::io(&personas, e))? {
            let path = entry.map_err(|e| CliError::io(&personas, e))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let bytes = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
                files.insert(format!("personas/{}", name.unwrap_or_default()), bytes);
            }
        }
    }
    Ok(files)
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// Write a new revision directory atomically: the files go to a temporary
/// directory that is renamed to `revisions/ID` once complete. Returns the
/// revision hash.
pub fn write_revision(
    repo: &Repo,
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<String, CliError> {
    let revisions = repo.root().join("revisions");
    std::fs::create_dir_all(&revisions).map_err(|e| CliError::io(&revisions, e))?;
    let tmp = revisions.join(format!(".new-{}-{}", manifest.id, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (rel, bytes) in files {
        let path = tmp.join("rules").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| CliError::io(&path, e))?;
    }
    let json = serde_json::to_string_pretty(manifest).unwrap_or_default();
    let mpath = tmp.join("manifest.json");
    std::fs::write(&mpath, json + "\n").map_err(|e| CliError::io(&mpath, e))?;
    let target = repo.revision_dir(&manifest.id);
    if target.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(CliError::refused(format!(
            "{} exists already",
            target.display()
        )));
    }
    std::fs::rename(&tmp, &target).map_err(|e| CliError::io(&target, e))?;
    Ok(manifest.hash())
}

/// The next free revision id: `r` and four digits, one more than the
/// largest there is.
pub fn next_id(repo: &Repo) -> Result<String, CliError> {
    let dir = repo.root().join("revisions");
    let mut max = 0u32;
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir).map_err(|e| CliError::io(&dir, e))? {
            let name = entry.map_err(|e| CliError::io(&dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix('r').and_then(|d| d.parse::<u32>().ok()) {
                max = max.max(n);
            }
        }
    }
    Ok(format!("r{:04}", max + 1))
}

/// Check revision `id` against the hash its author signed into the change
/// log: the manifest hashes to `expected`, every file under `rules/` is
/// listed with its SHA-256 and nothing else is there, and the copy compiles
/// to the rule set hash the manifest names. Returns the manifest.
pub fn verify(repo: &Repo, id: &str, expected: &str) -> Result<Manifest, CliError> {
    let manifest = Manifest::load(repo, id)?;
    let dir = repo.revision_dir(id);
    let tampered = |what: String| {
        CliError::refused(format!(
            "revision {id} in {} is tampered: {what}; it cannot be approved, published or rolled back to",
            dir.display()
        ))
    };
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
    let compiled = RuleSet::compile(&RuleSource::from_archive(&rules)?)?;
    if compiled.hash() != manifest.rules_hash {
        return Err(tampered(format!(
            "the rules compile to hash {}, the manifest says {}",
            compiled.hash(),
            manifest.rules_hash
        )));
    }
    Ok(manifest)
}

/// Every file under `dir`, by path relative to `root`, with its SHA-256.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))?;
    for entry in entries {
        let path: PathBuf = entry.map_err(|e| CliError::io(dir, e))?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
            let rel = path.strip_prefix(root).map(slash).unwrap_or_default();
            out.insert(rel, sha256_hex(&bytes));
        }
    }
    Ok(())
}
