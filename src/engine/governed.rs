//! Serving a governance repository (`governance_repo` in
//! [`EngineOptions`](super::EngineOptions)): the engine serves the
//! repository's live revision and follows publishes and rollbacks, but
//! only revisions the repository proves were approved.
//!
//! What it guarantees: a revision goes live in the engine only when
//! `nextbest_governance::live::live` accepts it (the change log verifies,
//! `LIVE` agrees with the log, the publish carried `required` valid
//! approvals from the approvers in `governance.toml`, none by the author,
//! and the revision's files hash to what its author signed) and its rules
//! compile to the content hash its manifest names. Anything else is
//! refused: at open, as an error; when following, the live version keeps
//! serving, and the refusal is counted in [`Engine::stats`], kept as the
//! last load error, written to the decision log (a `"kind":"governance"`
//! record) when there is one, and returned.
//!
//! What it does not: stop the handle's own [`Engine::publish`],
//! [`Engine::reload`] and [`Engine::rollback`], which stay the operator's
//! direct path; following resumes from the repository's next change.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nextbest_governance::live::{self, Fingerprint, LiveRevision};
use nextbest_governance::{short, Repo};
use parking_lot::Mutex;
use serde::Serialize;

use super::{Engine, Watcher};
use crate::base::{Error, Timestamp};
use crate::ruleset::{RuleSet, RuleSource};

/// The governed side of an engine.
pub(super) struct Governed {
    root: PathBuf,
    state: Mutex<FollowState>,
}

struct FollowState {
    /// The revision the engine serves from the repository.
    serving: LiveRevision,
    followed: u64,
    refused: u64,
    last_refusal: Option<String>,
    /// The repository as it was at the last refusal, so polling the same
    /// refused state counts and logs it once.
    refused_at: Option<(Fingerprint, String)>,
}

/// The governance repository an engine serves, in [`EngineStats`](super::EngineStats).
#[derive(Debug, Clone, Serialize)]
pub struct GovernanceStats {
    /// The repository's directory.
    pub repo: PathBuf,
    /// The revision serving.
    pub revision: String,
    /// Its revision hash.
    pub revision_hash: String,
    /// The repository's live-pointer number when it went live here.
    pub live_version: u64,
    /// Who approved it (empty for the repository's first revision).
    pub approvers: Vec<String>,
    /// Publishes and rollbacks of the repository followed (the opening
    /// load not counted).
    pub followed: u64,
    /// Live revisions refused (unapproved, tampered, or not compiling).
    pub refused: u64,
    /// Why the last one was refused.
    pub last_refusal: Option<String>,
}

fn refused(e: impl std::fmt::Display) -> Error {
    Error::Governance(e.to_string())
}

/// The verified live revision of the repository at `root`, compiled.
fn load(root: &Path) -> Result<(LiveRevision, RuleSet), Error> {
    let repo = Repo::open(root).map_err(refused)?;
    let live = live::live(&repo).map_err(refused)?;
    let rules = RuleSource::from_archive(&live.rules_dir)
        .and_then(|src| RuleSet::compile(&src))
        .map_err(|e| {
            refused(format!(
                "revision {} of {} does not compile: {e}",
                live.id,
                root.display()
            ))
        })?;
    if rules.hash() != live.rules_hash {
        return Err(refused(nextbest_governance::revision::tampered(
            &repo,
            &live.id,
            &format!(
                "its rules compile to hash {}, the change log recorded {}",
                short(rules.hash()),
                short(&live.rules_hash)
            ),
        )));
    }
    Ok((live, rules))
}

impl Governed {
    /// Open the repository at `root`: its live revision, verified and
    /// compiled, or the reason it may not be served.
    pub(super) fn open(root: &Path) -> Result<(Governed, RuleSet), Error> {
        let (serving, rules) = load(root)?;
        let state = FollowState {
            serving,
            followed: 0,
            refused: 0,
            last_refusal: None,
            refused_at: None,
        };
        let g = Governed {
            root: root.to_path_buf(),
            state: Mutex::new(state),
        };
        Ok((g, rules))
    }

    pub(super) fn stats(&self) -> GovernanceStats {
        let s = self.state.lock();
        GovernanceStats {
            repo: self.root.clone(),
            revision: s.serving.id.clone(),
            revision_hash: s.serving.revision_hash.clone(),
            live_version: s.serving.live_version,
            approvers: s.serving.approvers.clone(),
            followed: s.followed,
            refused: s.refused,
            last_refusal: s.last_refusal.clone(),
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        Repo::open(&self.root).ok().map(|r| Fingerprint::of(&r))
    }
}

/// A `"kind":"governance"` decision-log record.
fn record(
    event: &str,
    repo: &Path,
    revision: &str,
    detail: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "v": 1,
        "kind": "governance",
        "timestamp": Timestamp::now().to_string(),
        "event": event,
        "repo": repo.display().to_string(),
        "revision": revision,
        "detail": detail,
    })
}

impl Engine {
    /// Serve the governance repository's live revision now, if it changed
    /// (a publish or a rollback) and it may be served; see the module
    /// docs of what is checked. Returns the engine's version number now
    /// serving (unchanged when the repository's live revision is the one
    /// serving).
    ///
    /// A refused revision leaves the live version serving and returns
    /// [`Error::Governance`] saying why; it is counted (once per state of
    /// the repository) in [`Engine::stats`] and logged. While a
    /// `nextbest revision` command holds the repository's lock, this
    /// returns an error without judging: call again once it finishes.
    pub fn follow_governance(&self) -> Result<u64, Error> {
        let Some(g) = &self.governed else {
            return Err(Error::InvalidConfig(
                "this engine does not serve a governance repository (no `governance_repo`)".into(),
            ));
        };
        let fingerprint = g.fingerprint().unwrap_or_default();
        if fingerprint.locked {
            return Err(Error::Governance(format!(
                "{} is being changed (changelog.lock exists): follow again once the `nextbest revision` command finishes",
                g.root.display()
            )));
        }
        // Lock order: this state, then the history (publish, counters);
        // `Engine::stats` reads this state before taking the history's.
        let mut s = g.state.lock();
        let outcome = Repo::open(&g.root)
            .and_then(|repo| live::live(&repo))
            .map_err(refused)
            .and_then(|live| {
                if live.revision_hash == s.serving.revision_hash {
                    Ok(None)
                } else {
                    load(&g.root).map(Some)
                }
            });
        match outcome {
            Ok(None) => {
                s.refused_at = None;
                Ok(self.current.load().number)
            }
            Ok(Some((live, rules))) => {
                let number = self.publish(rules);
                if let Some(log) = &self.log {
                    let detail = serde_json::json!({
                        "revision_hash": live.revision_hash, "rules_hash": live.rules_hash,
                        "live_version": live.live_version, "went_live": live.went_live,
                        "approvers": live.approvers, "previous": s.serving.id, "engine_version": number,
                    });
                    // The version is live either way; a refused note is counted
                    // by the log (`refused`).
                    let _ = log.log_note(record("followed", &g.root, &live.id, detail));
                }
                s.serving = live;
                s.followed += 1;
                s.refused_at = None;
                Ok(number)
            }
            Err(e) => {
                let message = e.to_string();
                let key = (fingerprint, message.clone());
                if s.refused_at.as_ref() != Some(&key) {
                    s.refused += 1;
                    s.last_refusal = Some(message.clone());
                    s.refused_at = Some(key);
                    let mut h = self.history.lock();
                    h.loads_failed += 1;
                    h.last_load_error = Some(message.clone());
                    drop(h);
                    if let Some(log) = &self.log {
                        let detail = serde_json::json!({
                            "reason": message, "serving": s.serving.id,
                            "serving_hash": s.serving.revision_hash,
                        });
                        let _ = log.log_note(record("refused", &g.root, &s.serving.id, detail));
                    }
                }
                Err(e)
            }
        }
    }

    /// Follow the governance repository from a thread: poll it every
    /// `interval` and call [`Engine::follow_governance`] when it changed
    /// and has been the same on two consecutive polls (so a command caught
    /// between appending to the log and moving `LIVE` is not judged
    /// half-way). Refusals are counted and logged as
    /// [`Engine::follow_governance`] says. The thread stops when the
    /// returned [`Watcher`] or the engine is dropped. Without a
    /// `governance_repo`, the watcher does nothing.
    pub fn watch_governance(self: &Arc<Self>, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let engine: Weak<Engine> = Arc::downgrade(self);
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nextbest-governance".into())
            .spawn(move || follow_loop(engine, interval, flag))
            .ok();
        Watcher { stop, handle }
    }
}

fn follow_loop(engine: Weak<Engine>, interval: Duration, stop: Arc<AtomicBool>) {
    let mut judged: Option<Fingerprint> = engine
        .upgrade()
        .and_then(|e| e.governed.as_ref().and_then(|g| g.fingerprint()));
    let mut previous: Option<Fingerprint> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(interval);
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Some(engine) = engine.upgrade() else {
            break;
        };
        let Some(g) = &engine.governed else {
            break;
        };
        let now = g.fingerprint();
        let stable = now.is_some() && previous == now;
        previous = now.clone();
        if !stable || judged == now || now.as_ref().is_some_and(|f| f.locked) {
            continue;
        }
        judged = now;
        // The outcome is in the stats and the log.
        let _ = engine.follow_governance();
    }
}
