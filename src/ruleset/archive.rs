//! The version archive: every published rule version's files under its
//! content hash, so that a decision logged months ago can be replayed on
//! the exact rules that made it.

use std::path::Path;

use crate::base::Error;
use crate::ruleset::source::ARCHIVED_CHALLENGER;
use crate::ruleset::{RuleSet, RuleSource};

/// Write `rules`' files under `dir/<hash>/` unless already there. The files
/// go to a temporary directory first and are renamed into place, so an
/// archived version is always complete.
pub(crate) fn archive_version(dir: &Path, rules: &RuleSet) -> Result<(), Error> {
    let target = dir.join(rules.hash());
    if target.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        rules.hash(),
        std::process::id(),
        crate::base::util::next_nonce()
    ));
    let write_all = |root: &Path, src: &RuleSource| -> Result<(), Error> {
        for (rel, text) in src.files() {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    };
    let result =
        write_all(&tmp, rules.source()).and_then(|()| match rules.source().challenger_source() {
            Some(c) => write_all(&tmp.join(ARCHIVED_CHALLENGER), c),
            None => Ok(()),
        });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &target).is_err() {
        // Another writer archived the same version first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !target.is_dir() {
            return Err(Error::io(
                &target,
                std::io::Error::other("could not archive the rule version"),
            ));
        }
    }
    Ok(())
}
