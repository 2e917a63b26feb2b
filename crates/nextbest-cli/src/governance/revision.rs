//! Revisions: a self-contained copy of a rule directory plus a manifest,
//! identified by the revision hash (SHA-256 of the manifest's canonical
//! JSON, which lists every copied file's SHA-256 and the rule set's content
//! hash). The hash is what the author's log entry and every approval sign,
//! so changing any byte of a revision after it was created is detected.
//!
//! The manifest and the file check are `nextbest_governance::revision`'s;
//! here, making revisions and the compile check.

use std::collections::BTreeMap;
use std::path::Path;

use nextbest::{RuleSet, RuleSource};

pub use nextbest_governance::revision::*;

use super::Repo;
use crate::error::CliError;

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
    let manifest = verify_files(repo, id, expected)?;
    let rules = repo.revision_dir(id).join("rules");
    let compiled = RuleSet::compile(&RuleSource::from_archive(&rules)?)?;
    if compiled.hash() != manifest.rules_hash {
        return Err(tampered(
            repo,
            id,
            &format!(
                "the rules compile to hash {}, the manifest says {}",
                compiled.hash(),
                manifest.rules_hash
            ),
        )
        .into());
    }
    Ok(manifest)
}
