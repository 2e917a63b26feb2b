//! The change log: `changelog.jsonl`, one JSON line per event (init,
//! created, submitted, approved, rejected, publish_refused, published,
//! rolled_back), append-only and chained: each entry carries `prev`, the
//! SHA-256 of the previous line's bytes, and is signed by its actor's key
//! over its own canonical JSON. `changelog.head` holds the number of
//! entries and the last line's hash, so a deleted last line is found too.
//!
//! Appending (which signs) is the command-line tool's; this module reads
//! and verifies. [`verify`] finds an edited line (its signature fails, the next line's
//! `prev` does not match, or it is not in canonical form), a deleted or
//! inserted line (`seq` and `prev` break), and a truncated log (the head
//! disagrees).

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::{now_rfc3339, read_text, sha256_hex, short, Error, Repo};

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The repository was created; its first revision is live.
    Init,
    /// A revision was created (a draft).
    Created,
    /// Its author submitted it for approval.
    Submitted,
    /// An approver approved it (with a signature over its hash and
    /// evidence).
    Approved,
    /// An approver rejected it (with a reason).
    Rejected,
    /// A publish was refused (with the reason).
    PublishRefused,
    /// It went live.
    Published,
    /// The live revision was rolled back to an earlier one (`revision`).
    RolledBack,
}

impl Event {
    /// The name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Init => "init",
            Event::Created => "created",
            Event::Submitted => "submitted",
            Event::Approved => "approved",
            Event::Rejected => "rejected",
            Event::PublishRefused => "publish_refused",
            Event::Published => "published",
            Event::RolledBack => "rolled_back",
        }
    }
}

/// One change-log entry. Optional fields are left out of the JSON when
/// empty; the field order is fixed, so an entry has one canonical line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// SHA-256 of the previous line's bytes ([`GENESIS`] for the first).
    pub prev: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What happened.
    pub event: Event,
    /// The revision it happened to (for a rollback: the one now live).
    pub revision: String,
    /// That revision's hash.
    pub revision_hash: String,
    /// Its rule set's content hash (what decisions carry).
    pub rules_hash: String,
    /// Who did it (the key's name).
    pub actor: String,
    /// The actor's public key, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_key: Option<String>,
    /// Why (rejections, refusals, rollbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Approvals: SHA-256 of the review report the approver read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Approvals: the signature over [`approval_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// Publishes: the approvers whose approvals counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Init, publish, rollback: the live pointer's sequence number (the
    /// version number a fleet would publish it as).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<u64>,
    /// Publish, rollback: the revision that was live before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_live: Option<String>,
    /// Init: SHA-256 of `governance.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_hash: Option<String>,
    /// The actor's signature over the entry without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Entry {
    /// A new entry; `seq`, `prev` and the signature are set when it is
    /// appended (by the command-line tool, which holds the keys).
    pub fn new(event: Event, revision: &str, revision_hash: &str, rules_hash: &str) -> Entry {
        Entry {
            seq: 0,
            prev: String::new(),
            at: now_rfc3339(),
            event,
            revision: revision.to_string(),
            revision_hash: revision_hash.to_string(),
            rules_hash: rules_hash.to_string(),
            actor: String::new(),
            actor_key: None,
            reason: None,
            evidence: None,
            approval: None,
            approvers: Vec::new(),
            live_version: None,
            previous_live: None,
            governance_hash: None,
            signature: None,
        }
    }

    /// The bytes the actor signs: a domain tag and the entry's canonical
    /// JSON without its signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Entry {
            signature: None,
            ..self.clone()
        };
        let mut out = b"nextbest change log entry v1\n".to_vec();
        out.extend(serde_json::to_vec(&unsigned).unwrap_or_default());
        out
    }

    /// The canonical line.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What an approval signs: the revision hash and the evidence's hash.
pub fn approval_message(revision_hash: &str, evidence: Option<&str>) -> Vec<u8> {
    format!(
        "nextbest approval v1\nrevision {revision_hash}\nevidence {}\n",
        evidence.unwrap_or("none")
    )
    .into_bytes()
}

/// One line of the log as read.
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The line's text.
    pub text: String,
    /// The entry, if the line parses.
    pub entry: Option<Entry>,
}

/// Read every line of the change log (an absent log is empty).
pub fn read_lines(repo: &Repo) -> Result<Vec<Line>, Error> {
    let path = repo.changelog();
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = read_text(&path)?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| Line {
            number: i + 1,
            text: l.to_string(),
            entry: serde_json::from_str(l).ok(),
        })
        .collect())
}

/// The entries of a log that verifies; an error naming the first problem
/// otherwise (commands refuse to act on a broken log).
pub fn read_verified(repo: &Repo) -> Result<Vec<Entry>, Error> {
    let lines = read_lines(repo)?;
    let problems = verify_lines(repo, &lines)?;
    if let Some(p) = problems.first() {
        return Err(Error::refused(format!(
            "the change log is damaged ({p}; {} problem(s) in all): run `nextbest revision log --repo {} --verify`",
            problems.len(),
            repo.root().display()
        )));
    }
    Ok(lines.into_iter().filter_map(|l| l.entry).collect())
}

/// Every problem of the log, each naming its line.
pub fn verify(repo: &Repo) -> Result<Vec<String>, Error> {
    verify_lines(repo, &read_lines(repo)?)
}

fn verify_lines(repo: &Repo, lines: &[Line]) -> Result<Vec<String>, Error> {
    let file = repo.changelog();
    let at = |n: usize| format!("{}:{n}", file.display());
    let mut problems = Vec::new();
    let (mut prev_hash, mut prev_seq) = (GENESIS.to_string(), 0);
    for l in lines {
        match &l.entry {
            None => problems.push(format!("{}: not a change-log entry", at(l.number))),
            Some(e) => {
                let found = check_entry(e, l, &prev_hash, prev_seq);
                problems.extend(found.into_iter().map(|p| format!("{}: {p}", at(l.number))));
                prev_seq = e.seq;
            }
        }
        prev_hash = sha256_hex(l.text.as_bytes());
    }
    problems.extend(check_head(repo, lines, &prev_hash)?);
    Ok(problems)
}

fn check_entry(e: &Entry, l: &Line, prev_hash: &str, prev_seq: u64) -> Vec<String> {
    let mut p = Vec::new();
    if e.seq != prev_seq + 1 {
        p.push(format!(
            "entry #{} follows entry #{prev_seq}: entries were deleted, inserted or reordered",
            e.seq
        ));
    }
    if e.prev != prev_hash {
        p.push(if l.number == 1 {
            "the first entry does not start the chain: lines before it were deleted".to_string()
        } else {
            format!("`prev` is {} but line {} hashes to {prev_hash}: line {} was edited, or lines were deleted", short(&e.prev), l.number - 1, l.number - 1)
        });
    }
    if e.line() != l.text {
        p.push("not in canonical form: the line was edited".into());
    }
    match (&e.actor_key, &e.signature) {
        (Some(k), Some(s)) if keys::verify(k, &e.signed_bytes(), s) => {}
        (Some(_), Some(_)) => p.push(format!(
            "{}'s signature does not verify: the entry was edited",
            e.actor
        )),
        (None, None) if e.event == Event::Init => {}
        _ => p.push(format!("the `{}` entry is not signed", e.event.as_str())),
    }
    p
}

fn check_head(repo: &Repo, lines: &[Line], last_hash: &str) -> Result<Vec<String>, Error> {
    let path = repo.head();
    if !path.exists() {
        return Ok(if lines.is_empty() {
            Vec::new()
        } else {
            vec![format!("{} is missing", path.display())]
        });
    }
    let head: serde_json::Value = serde_json::from_str(&read_text(&path)?).unwrap_or_default();
    let mut p = Vec::new();
    if head["entries"].as_u64() != Some(lines.len() as u64) {
        p.push(format!(
            "{}: says {} entries, the log has {}: lines were deleted at the end or appended without the tool",
            path.display(),
            head["entries"],
            lines.len()
        ));
    } else if head["last_hash"].as_str() != Some(last_hash) {
        p.push(format!(
            "{}: the last line does not hash to the recorded head: it was edited",
            path.display()
        ));
    }
    Ok(p)
}
