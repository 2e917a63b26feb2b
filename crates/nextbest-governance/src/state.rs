//! Where each revision stands, derived from the change log alone (the log
//! is the record; nothing else holds state): draft → submitted →
//! approved / rejected → live → superseded / rolled back.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::changelog::{approval_message, Entry, Event};
use crate::keys;
use crate::Governance;

/// A revision's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created, not yet submitted.
    Draft,
    /// Submitted, waiting for approvals.
    Submitted,
    /// Has the approvals `governance.toml` requires.
    Approved,
    /// Rejected by an approver.
    Rejected,
    /// Serving.
    Live,
    /// Was live; a later publish replaced it.
    Superseded,
    /// Was live; rolled back.
    RolledBack,
}

impl State {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Submitted => "submitted",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Live => "live",
            State::Superseded => "superseded",
            State::RolledBack => "rolled_back",
        }
    }
}

/// One approval as logged, and whether it counts.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// The approver's name.
    pub approver: String,
    /// The approver's public key.
    pub key: String,
    /// When.
    pub at: String,
    /// The review report's SHA-256.
    pub evidence: Option<String>,
    /// Why it does not count (`None`: it counts).
    pub invalid: Option<String>,
}

/// A revision as the log tells it.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    /// Its id.
    pub id: String,
    /// Its hash, as its `created` (or `init`) entry recorded it.
    pub revision_hash: String,
    /// Its rule set's content hash.
    pub rules_hash: String,
    /// Its author.
    pub author: String,
    /// The author's key, if any.
    pub author_key: Option<String>,
    /// Its state.
    pub state: State,
    /// Its approvals.
    pub approvals: Vec<Approval>,
    /// The entries about it (sequence numbers).
    pub entries: Vec<u64>,
}

impl Revision {
    /// The approvals that count.
    pub fn valid_approvals(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.iter().filter(|a| a.invalid.is_none())
    }

    /// The approvers whose approvals count, or, when fewer than
    /// `required` do, how many count and why the others do not.
    pub fn approvers_if_enough(&self, required: usize) -> Result<Vec<String>, Shortfall> {
        let valid: Vec<String> = self.valid_approvals().map(|a| a.approver.clone()).collect();
        if valid.len() >= required {
            return Ok(valid);
        }
        let invalid: Vec<String> = self
            .approvals
            .iter()
            .filter_map(|a| {
                a.invalid
                    .as_ref()
                    .map(|why| format!("{}'s does not count: {why}", a.approver))
            })
            .collect();
        Err(Shortfall {
            valid: valid.len(),
            why_not: if invalid.is_empty() {
                String::new()
            } else {
                format!(" ({})", invalid.join("; "))
            },
        })
    }
}

/// Too few valid approvals: how many count, and " (why the others do
/// not)" or nothing, for the caller's sentence.
#[derive(Debug)]
pub struct Shortfall {
    /// The approvals that count.
    pub valid: usize,
    /// " (alice's does not count: ...)", or empty.
    pub why_not: String,
}

/// The repository as the log tells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Every revision, by id.
    pub revisions: BTreeMap<String, Revision>,
    /// The live revision.
    pub live: Option<String>,
    /// How many times the live pointer moved.
    pub live_version: u64,
    /// The revisions that were live, oldest first, the live one last:
    /// what a rollback goes back through.
    pub live_stack: Vec<String>,
    /// SHA-256 of `governance.toml` as recorded at init.
    pub governance_hash: Option<String>,
}

/// Replay the log.
pub fn derive(entries: &[Entry], gov: &Governance) -> Status {
    let mut s = Status::default();
    for e in entries {
        if let Some(r) = s.revisions.get_mut(&e.revision) {
            r.entries.push(e.seq);
        }
        match e.event {
            Event::Init => {
                s.governance_hash = e.governance_hash.clone();
                add(&mut s, e, State::Live);
                go_live(&mut s, &e.revision, e, State::Superseded);
            }
            Event::Created => add(&mut s, e, State::Draft),
            Event::Submitted => set(&mut s, &e.revision, State::Submitted),
            Event::Approved => approve(&mut s, e, gov),
            Event::Rejected => set(&mut s, &e.revision, State::Rejected),
            Event::PublishRefused => {}
            Event::Published => go_live(&mut s, &e.revision, e, State::Superseded),
            Event::RolledBack => go_live(&mut s, &e.revision, e, State::RolledBack),
        }
    }
    s
}

fn add(s: &mut Status, e: &Entry, state: State) {
    s.revisions.insert(
        e.revision.clone(),
        Revision {
            id: e.revision.clone(),
            revision_hash: e.revision_hash.clone(),
            rules_hash: e.rules_hash.clone(),
            author: e.actor.clone(),
            author_key: e.actor_key.clone(),
            state,
            approvals: Vec::new(),
            entries: vec![e.seq],
        },
    );
}

fn set(s: &mut Status, id: &str, state: State) {
    if let Some(r) = s.revisions.get_mut(id) {
        r.state = state;
    }
}

fn approve(s: &mut Status, e: &Entry, gov: &Governance) {
    let Some(r) = s.revisions.get_mut(&e.revision) else {
        return;
    };
    let key = e.actor_key.clone().unwrap_or_default();
    let invalid = approval_problem(r, e, &key, gov);
    r.approvals.push(Approval {
        approver: e.actor.clone(),
        key,
        at: e.at.clone(),
        evidence: e.evidence.clone(),
        invalid,
    });
    if r.state == State::Submitted && r.valid_approvals().count() >= gov.required {
        r.state = State::Approved;
    }
}

/// Why an approval entry does not count, if it does not.
fn approval_problem(r: &Revision, e: &Entry, key: &str, gov: &Governance) -> Option<String> {
    if gov.approver(key).is_none() {
        return Some(format!(
            "{}'s key is not listed in governance.toml",
            e.actor
        ));
    }
    if r.author_key
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case(key))
        || r.author == e.actor
    {
        return Some(format!("{} is the author", e.actor));
    }
    if e.revision_hash != r.revision_hash {
        return Some("it signs another revision hash".into());
    }
    if r.approvals
        .iter()
        .any(|a| a.invalid.is_none() && a.key.eq_ignore_ascii_case(key))
    {
        return Some(format!("{} approved already", e.actor));
    }
    let msg = approval_message(&r.revision_hash, e.evidence.as_deref());
    match &e.approval {
        Some(sig) if keys::verify(key, &msg, sig) => None,
        _ => Some("the signature does not verify".into()),
    }
}

fn go_live(s: &mut Status, id: &str, e: &Entry, old_state: State) {
    if let Some(old) = s.live.take() {
        if old != id {
            set(s, &old, old_state);
        }
    }
    set(s, id, State::Live);
    s.live = Some(id.to_string());
    s.live_version = e.live_version.unwrap_or(s.live_version + 1);
    if e.event == Event::RolledBack {
        if let Some(pos) = s.live_stack.iter().rposition(|x| x == id) {
            s.live_stack.truncate(pos + 1);
            return;
        }
    }
    s.live_stack.push(id.to_string());
}
