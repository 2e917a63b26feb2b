//! The live revision, as an engine serving a repository sees it: what
//! `LIVE` names, served only when the change log, the approvals and the
//! revision's files all agree that it may be.
//!
//! [`live`] refuses, naming the reason, when:
//! - the change log is damaged (an edited, inserted or deleted line);
//! - `governance.toml` changed since the repository was initialised;
//! - `LIVE` names another revision (or hash) than the change log made live:
//!   the pointer was moved without a logged publish;
//! - the entry that made it live was not by a listed approver, or (a
//!   publish) the revision did not have `required` valid approvals at that
//!   point of the log: approvals by listed keys other than the author's,
//!   whose signatures verify over the revision hash;
//! - the revision's manifest or files are not the ones its author signed.
//!
//! [`Fingerprint`] is the cheap check a follower polls: it changes
//! whenever a command moves the live pointer or appends to the log.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::changelog::{self, Entry, Event};
use crate::revision::{self, Manifest};
use crate::state::{self, Status};
use crate::{read_text, short, Error, Repo};

/// The `LIVE` file: which revision serves, written by publish and rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The revision id.
    pub revision: String,
    /// Its revision hash.
    pub revision_hash: String,
    /// Its rule set's content hash.
    pub rules_hash: String,
    /// Its rules, relative to the repository.
    pub rules_dir: String,
    /// How many times the live pointer has moved.
    pub live_version: u64,
    /// When it went live (RFC 3339).
    pub since: String,
}

impl Pointer {
    /// Read `LIVE`.
    pub fn read(repo: &Repo) -> Result<Pointer, Error> {
        let path = repo.live_pointer();
        if !path.is_file() {
            return Err(Error::refused(format!(
                "{} is missing: nothing is live in {}",
                path.display(),
                repo.root().display()
            )));
        }
        serde_json::from_str(&read_text(&path)?)
            .map_err(|e| Error::bad_file(&path, format!("not a live pointer: {e}")))
    }
}

/// The live revision, verified.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRevision {
    /// The revision id.
    pub id: String,
    /// Its revision hash.
    pub revision_hash: String,
    /// The content hash its rules must compile to.
    pub rules_hash: String,
    /// The live pointer's sequence number (1 at init, one more on every
    /// publish and rollback).
    pub live_version: u64,
    /// The directory of its rule files (`revisions/ID/rules`).
    pub rules_dir: PathBuf,
    /// The approvers whose approvals made it publishable (empty for the
    /// repository's first revision).
    pub approvers: Vec<String>,
    /// What made it live: `init`, `published` or `rolled_back`, and by whom.
    pub went_live: String,
    /// Its manifest.
    pub manifest: Manifest,
}

/// The live revision of `repo`, or the reason it may not be served.
pub fn live(repo: &Repo) -> Result<LiveRevision, Error> {
    let entries = changelog::read_verified(repo)?;
    let status = state::derive(&entries, &repo.governance);
    if status.governance_hash.as_deref() != Some(repo.governance_hash.as_str()) {
        return Err(Error::refused(format!(
            "{}: governance.toml changed since the repository was initialised: its approvers are not the ones the change log recorded",
            repo.root().display()
        )));
    }
    let Some(id) = status.live.clone() else {
        return Err(Error::refused(format!(
            "the change log of {} makes no revision live",
            repo.root().display()
        )));
    };
    let pointer = Pointer::read(repo)?;
    let r = &status.revisions[&id];
    if pointer.revision != id || pointer.revision_hash != r.revision_hash {
        return Err(Error::refused(format!(
            "{} names {} ({}), but the change log made {id} ({}) live: the live pointer was moved without a logged, approved publish",
            repo.live_pointer().display(),
            pointer.revision,
            short(&pointer.revision_hash),
            short(&r.revision_hash)
        )));
    }
    let at = entries
        .iter()
        .rposition(goes_live)
        .ok_or_else(|| Error::refused("no entry made a revision live"))?;
    let approvers = check_went_live(repo, &entries, at)?;
    let manifest = revision::verify_files(repo, &id, &r.revision_hash)?;
    if manifest.rules_hash != r.rules_hash {
        return Err(revision::tampered(
            repo,
            &id,
            &format!(
                "the manifest names rules {}, the change log recorded {}",
                short(&manifest.rules_hash),
                short(&r.rules_hash)
            ),
        ));
    }
    let e = &entries[at];
    Ok(LiveRevision {
        id: id.clone(),
        revision_hash: r.revision_hash.clone(),
        rules_hash: r.rules_hash.clone(),
        live_version: status.live_version,
        rules_dir: repo.revision_dir(&id).join("rules"),
        approvers,
        went_live: format!(
            "{} by {} (change-log entry #{})",
            e.event.as_str(),
            e.actor,
            e.seq
        ),
        manifest,
    })
}

fn goes_live(e: &Entry) -> bool {
    matches!(e.event, Event::Init | Event::Published | Event::RolledBack)
}

/// Check that `entries[at]` (an init, publish or rollback) could make its
/// revision live: the actor is a listed approver, and the revision had
/// enough valid approvals when it was published (for a rollback: when the
/// revision rolled back to was last published). Returns those approvers.
fn check_went_live(repo: &Repo, entries: &[Entry], at: usize) -> Result<Vec<String>, Error> {
    let e = &entries[at];
    let gov = &repo.governance;
    if e.event == Event::Init {
        return Ok(Vec::new());
    }
    let key = e.actor_key.as_deref().unwrap_or_default();
    if gov.approver(key).is_none() {
        return Err(Error::refused(format!(
            "{} of {} (change-log entry #{}) was by {}, whose key is not an approver in governance.toml",
            e.event.as_str(),
            e.revision,
            e.seq,
            e.actor
        )));
    }
    if e.event == Event::RolledBack {
        let before = &entries[..at];
        return match before.iter().rposition(|p| {
            p.revision == e.revision && matches!(p.event, Event::Init | Event::Published)
        }) {
            Some(p) => check_went_live(repo, entries, p),
            None => Err(Error::refused(format!(
                "change-log entry #{} rolls back to {}, which was never published",
                e.seq, e.revision
            ))),
        };
    }
    let then: Status = state::derive(&entries[..at], gov);
    let Some(r) = then.revisions.get(&e.revision) else {
        return Err(Error::refused(format!(
            "change-log entry #{} publishes {}, which the log never created",
            e.seq, e.revision
        )));
    };
    r.approvers_if_enough(gov.required).map_err(|no| {
        Error::refused(format!(
            "{} was published (change-log entry #{}) with {} valid approval(s); governance.toml requires {}{}",
            e.revision, e.seq, no.valid, gov.required, no.why_not
        ))
    })
}

/// What a follower compares between polls: the bytes of `LIVE` and
/// `changelog.head`. Every publish and rollback rewrites both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    live: Option<Vec<u8>>,
    head: Option<Vec<u8>>,
    /// Whether a command holds the repository's lock (it is mid-change).
    pub locked: bool,
}

impl Fingerprint {
    /// The repository's fingerprint now (missing files read as absent).
    pub fn of(repo: &Repo) -> Fingerprint {
        Fingerprint {
            live: std::fs::read(repo.live_pointer()).ok(),
            head: std::fs::read(repo.head()).ok(),
            locked: repo.lock_path().exists(),
        }
    }
}
