//! The `nextbest revision ...` commands. Each one opens the repository,
//! takes its lock, reads and verifies the change log, checks the rules of
//! the governed process, appends what it did to the log and prints it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nextbest::RuleSet;

use super::changelog::{self, approval_message, Entry, Event};
use super::revision::{self, Author, ChangeRequest, Manifest, Parent};
use super::state::{self, Revision, State, Status};
use super::{now_rfc3339, sha256_hex, short, Governance, Repo, RepoLock};
use crate::error::{write_atomic, CliError};
use crate::keys::KeyPair;

/// A repository opened for one command: locked, its log verified.
struct Session {
    repo: Repo,
    entries: Vec<Entry>,
    status: Status,
    _lock: RepoLock,
}

impl Session {
    fn open(root: &Path) -> Result<Session, CliError> {
        let repo = Repo::open(root)?;
        let lock = RepoLock::take(&repo)?;
        let entries = changelog::read_verified(&repo)?;
        let status = state::derive(&entries, &repo.governance);
        Ok(Session {
            repo,
            entries,
            status,
            _lock: lock,
        })
    }

    fn append(&mut self, entry: Entry, signer: Option<&KeyPair>) -> Result<Entry, CliError> {
        let e = changelog::append(&self.repo, &self.entries, entry, signer)?;
        self.entries.push(e.clone());
        self.status = state::derive(&self.entries, &self.repo.governance);
        Ok(e)
    }

    fn revision(&self, id: &str) -> Result<&Revision, CliError> {
        self.status.revisions.get(id).ok_or_else(|| {
            CliError::refused(format!(
                "no revision `{id}` in the change log of {} (see `nextbest revision log --repo {}`)",
                self.repo.root().display(),
                self.repo.root().display()
            ))
        })
    }

    /// The listed approver holding `key`, or a refusal naming the file.
    fn approver(&self, key: &KeyPair, doing: &str) -> Result<(), CliError> {
        match self.repo.governance.approver(&key.public_hex()) {
            Some(_) => Ok(()),
            None => Err(CliError::refused(format!(
                "{} may not {doing}: their key is not an approver in {}",
                key.name,
                self.repo.root().join("governance.toml").display()
            ))),
        }
    }
}

/// `revision init`: write `governance.toml` and make `from` the first,
/// live revision.
pub fn init(
    root: &Path,
    from: &Path,
    approvers: &[PathBuf],
    required: usize,
    key: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let gpath = root.join("governance.toml");
    if gpath.exists() {
        return Err(CliError::refused(format!(
            "{} exists: the repository is initialised already",
            gpath.display()
        )));
    }
    RuleSet::from_dir(from).map_err(|e| in_dir(from, e))?;
    let keys = approvers
        .iter()
        .map(|p| crate::keys::load_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let gov = Governance {
        required,
        approvers: keys,
    };
    gov.check().map_err(CliError::refused)?;
    let signer = key.map(KeyPair::load).transpose()?;
    std::fs::create_dir_all(root).map_err(|e| CliError::io(root, e))?;
    let text = format!(
        "# nextbest governance repository: who approves, and how many approvals a publish needs.\n{}",
        toml::to_string(&gov).map_err(|e| CliError::refused(e.to_string()))?
    );
    std::fs::write(&gpath, text).map_err(|e| CliError::io(&gpath, e))?;
    let mut s = Session::open(root)?;
    let title = format!("Initial revision from {}", from.display());
    let (manifest, hash) = create_revision(&s, from, &title, None, "init", None, signer.as_ref())?;
    let mut entry = Entry::new(Event::Init, &manifest.id, &hash, &manifest.rules_hash);
    entry.actor = "init".into();
    entry.live_version = Some(1);
    entry.governance_hash = Some(s.repo.governance_hash.clone());
    s.append(entry, signer.as_ref())?;
    write_live(&s, &manifest.id)?;
    println!(
        "initialised {} ({} approver(s), {} required)",
        root.display(),
        gov.approvers.len(),
        required
    );
    println!(
        "{} is live: {} {}",
        manifest.id,
        manifest.ruleset,
        short(&manifest.rules_hash)
    );
    println!("{}", manifest.id);
    Ok(ExitCode::SUCCESS)
}

/// What `revision new` is told.
pub struct NewRevision {
    /// The rule directory.
    pub dir: PathBuf,
    /// The change request's title.
    pub title: String,
    /// Its objective.
    pub objective: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// The author's notes.
    pub notes: Option<String>,
    /// The author's key.
    pub key: PathBuf,
}

/// `revision new`: a draft revision of `dir` against the live one.
pub fn new(root: &Path, args: &NewRevision) -> Result<ExitCode, CliError> {
    let author = KeyPair::load(&args.key)?;
    let mut s = Session::open(root)?;
    let cr = ChangeRequest {
        title: args.title.clone(),
        objective: args.objective.clone(),
        requested_by: args.requested_by.clone(),
    };
    let (m, hash) = create_revision(
        &s,
        &args.dir,
        &cr.title,
        Some(cr.clone()),
        &cr.requested_by,
        args.notes.clone(),
        Some(&author),
    )?;
    s.append(
        Entry::new(Event::Created, &m.id, &hash, &m.rules_hash),
        Some(&author),
    )?;
    let parent = m
        .parent
        .as_ref()
        .map_or("none".to_string(), |p| p.id.clone());
    println!(
        "created {} (draft) by {}: \"{}\", requested by {}",
        m.id, author.name, cr.title, cr.requested_by
    );
    println!(
        "  rules {} {} from {}, parent {parent}",
        m.ruleset,
        short(&m.rules_hash),
        args.dir.display()
    );
    println!("  revision hash {hash}");
    println!("{}", m.id);
    Ok(ExitCode::SUCCESS)
}

/// Copy `dir` into a new revision of the repository and write its
/// manifest; returns it with its hash.
fn create_revision(
    s: &Session,
    dir: &Path,
    title: &str,
    change_request: Option<ChangeRequest>,
    requested_by: &str,
    notes: Option<String>,
    author: Option<&KeyPair>,
) -> Result<(Manifest, String), CliError> {
    let rules = RuleSet::from_dir(dir).map_err(|e| in_dir(dir, e))?;
    let parent = match &s.status.live {
        Some(id) => {
            let live = s.revision(id)?;
            if live.rules_hash == rules.hash() {
                return Err(CliError::refused(format!(
                    "{} has the same rules as the live revision {id} (hash {}): nothing to change",
                    dir.display(),
                    short(&live.rules_hash)
                )));
            }
            Some(Parent {
                id: id.clone(),
                revision_hash: live.revision_hash.clone(),
            })
        }
        None => None,
    };
    let files = revision::rule_files(dir)?;
    let manifest = Manifest {
        format: revision::FORMAT,
        id: revision::next_id(&s.repo)?,
        ruleset: rules.name().to_string(),
        rules_hash: rules.hash().to_string(),
        parent,
        change_request: change_request.unwrap_or(ChangeRequest {
            title: title.to_string(),
            objective: None,
            requested_by: requested_by.to_string(),
        }),
        author: Author {
            name: author.map_or("init".into(), |k| k.name.clone()),
            public_key: author.map(KeyPair::public_hex),
        },
        notes,
        created_at: now_rfc3339(),
        source: dir.display().to_string(),
        files: files
            .iter()
            .map(|(p, b)| (p.clone(), sha256_hex(b)))
            .collect(),
    };
    let hash = revision::write_revision(&s.repo, &manifest, &files)?;
    Ok((manifest, hash))
}

fn in_dir(dir: &Path, e: nextbest::Error) -> CliError {
    match e {
        nextbest::Error::Rules(errs) => CliError::refused(format!(
            "{} does not load: {}",
            dir.display(),
            errs.errors()
                .iter()
                .map(|r| format!(
                    "{}:{}:{}: {}",
                    dir.join(&r.location.file).display(),
                    r.location.line,
                    r.location.column,
                    r.message
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        other => CliError::Core(other),
    }
}

/// `revision submit`: the author hands a draft over for approval.
pub fn submit(root: &Path, id: &str, key: &Path) -> Result<ExitCode, CliError> {
    let k = KeyPair::load(key)?;
    let mut s = Session::open(root)?;
    let r = s.revision(id)?.clone();
    if r.author_key.as_deref() != Some(k.public_hex().as_str()) {
        return Err(CliError::refused(format!(
            "only the author ({}) submits {id}; {} is not the author",
            r.author, k.name
        )));
    }
    if r.state != State::Draft {
        return Err(CliError::refused(format!(
            "{id} is {}, not a draft: only drafts are submitted",
            r.state.as_str()
        )));
    }
    revision::verify(&s.repo, id, &r.revision_hash)?;
    s.append(
        Entry::new(Event::Submitted, id, &r.revision_hash, &r.rules_hash),
        Some(&k),
    )?;
    let g = &s.repo.governance;
    println!(
        "submitted {id} by {}: it needs {} approval(s) from {}",
        k.name,
        g.required,
        approver_names(g, &r)
    );
    Ok(ExitCode::SUCCESS)
}

fn approver_names(g: &Governance, r: &Revision) -> String {
    let names: Vec<&str> = g
        .approvers
        .iter()
        .filter(|a| r.author_key.as_deref() != Some(a.public_key.as_str()))
        .map(|a| a.name.as_str())
        .collect();
    names.join(", ")
}

/// `revision approve`: a listed approver other than the author signs the
/// revision hash and the review report's hash.
pub fn approve(
    root: &Path,
    id: &str,
    key: &Path,
    report: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let k = KeyPair::load(key)?;
    let mut s = Session::open(root)?;
    let r = s.revision(id)?.clone();
    s.approver(&k, "approve")?;
    if r.author_key.as_deref() == Some(k.public_hex().as_str()) || r.author == k.name {
        return Err(CliError::refused(format!(
            "self-approval refused: {} is the author of {id}; another approver must approve it",
            k.name
        )));
    }
    if !matches!(r.state, State::Submitted | State::Approved) {
        return Err(CliError::refused(format!(
            "{id} is {}: only submitted revisions are approved",
            r.state.as_str()
        )));
    }
    if r.valid_approvals().any(|a| a.key == k.public_hex()) {
        return Err(CliError::refused(format!(
            "{} approved {id} already",
            k.name
        )));
    }
    let manifest = revision::verify(&s.repo, id, &r.revision_hash)?;
    let evidence = report
        .map(|p| keep_evidence(&s, &manifest, p))
        .transpose()?;
    let mut entry = Entry::new(Event::Approved, id, &r.revision_hash, &r.rules_hash);
    entry.approval = Some(k.sign(&approval_message(&r.revision_hash, evidence.as_deref())));
    entry.evidence = evidence.clone();
    s.append(entry, Some(&k))?;
    let now = s.revision(id)?;
    println!(
        "approved {id} by {} ({} of {} required approval(s)); now {}",
        k.name,
        now.valid_approvals().count(),
        s.repo.governance.required,
        now.state.as_str()
    );
    match evidence {
        Some(h) => println!(
            "  signed revision hash {} and report sha256 {h}",
            r.revision_hash
        ),
        None => println!(
            "  signed revision hash {} (no review report given)",
            r.revision_hash
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Check that `report` reviews this revision against its parent, copy it
/// to `evidence/`, and return its SHA-256.
fn keep_evidence(s: &Session, m: &Manifest, report: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(report).map_err(|e| CliError::io(report, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let meta = |name: &str| crate::review::html::read_meta(&text, name);
    let Some(candidate) = meta("nextbest-candidate") else {
        return Err(CliError::bad_file(
            report,
            "not a review report of `nextbest review` (no nextbest-candidate hash)",
        ));
    };
    if candidate != m.rules_hash {
        return Err(CliError::bad_file(
            report,
            format!(
                "reviews rules {}, but {} holds rules {}: review this revision's rules",
                short(&candidate),
                m.id,
                short(&m.rules_hash)
            ),
        ));
    }
    if let Some(p) = &m.parent {
        let parent = s.revision(&p.id)?;
        if meta("nextbest-baseline").as_deref() != Some(parent.rules_hash.as_str()) {
            return Err(CliError::bad_file(report, format!(
                "is not compared against {}'s parent {} (rules {}): run `nextbest review` with --baseline the parent's rules",
                m.id, p.id, short(&parent.rules_hash)
            )));
        }
    }
    let hash = sha256_hex(&bytes);
    let dir = s.repo.evidence_dir();
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
    write_atomic(&dir.join(format!("{hash}.html")), &bytes)?;
    Ok(hash)
}

/// `revision reject`: a listed approver turns a submitted revision down.
pub fn reject(root: &Path, id: &str, key: &Path, reason: &str) -> Result<ExitCode, CliError> {
    let k = KeyPair::load(key)?;
    let mut s = Session::open(root)?;
    let r = s.revision(id)?.clone();
    s.approver(&k, "reject")?;
    if !matches!(r.state, State::Submitted | State::Approved) {
        return Err(CliError::refused(format!(
            "{id} is {}: only submitted or approved revisions are rejected",
            r.state.as_str()
        )));
    }
    if reason.trim().is_empty() {
        return Err(CliError::refused(
            "a rejection needs a reason (--reason \"...\")",
        ));
    }
    let mut entry = Entry::new(Event::Rejected, id, &r.revision_hash, &r.rules_hash);
    entry.reason = Some(reason.to_string());
    s.append(entry, Some(&k))?;
    println!("rejected {id} by {}: {reason}", k.name);
    Ok(ExitCode::SUCCESS)
}

/// `revision publish`: make an approved revision live. Every refusal is
/// logged before it is reported.
pub fn publish(root: &Path, id: &str, key: &Path) -> Result<ExitCode, CliError> {
    let k = KeyPair::load(key)?;
    let mut s = Session::open(root)?;
    let r = s.revision(id)?.clone();
    let approvers = match publish_check(&s, &r, &k) {
        Ok(a) => a,
        Err(reason) => {
            let mut entry = Entry::new(Event::PublishRefused, id, &r.revision_hash, &r.rules_hash);
            entry.reason = Some(reason.clone());
            let logged = s.append(entry, Some(&k))?;
            return Err(CliError::refused(format!(
                "publish of {id} refused: {reason} (logged as change-log entry #{})",
                logged.seq
            )));
        }
    };
    let previous = s.status.live.clone();
    let mut entry = Entry::new(Event::Published, id, &r.revision_hash, &r.rules_hash);
    entry.approvers = approvers.clone();
    entry.live_version = Some(s.status.live_version + 1);
    entry.previous_live = previous.clone();
    let e = s.append(entry, Some(&k))?;
    write_live(&s, id)?;
    println!(
        "published {id} by {}: live version {}, approved by {}; {} superseded",
        k.name,
        e.live_version.unwrap_or(0),
        approvers.join(", "),
        previous.as_deref().unwrap_or("nothing")
    );
    println!("  rules {}", r.rules_hash);
    Ok(ExitCode::SUCCESS)
}

/// Why `r` may not be published by `k`, or the approvers that count.
fn publish_check(s: &Session, r: &Revision, k: &KeyPair) -> Result<Vec<String>, String> {
    let gov = &s.repo.governance;
    if gov.approver(&k.public_hex()).is_none() {
        return Err(format!(
            "{} is not an approver in governance.toml and may not publish",
            k.name
        ));
    }
    match r.state {
        State::Submitted | State::Approved => {}
        State::Draft => {
            return Err(format!(
                "{} is a draft: it was never submitted, nor approved",
                r.id
            ))
        }
        other => return Err(format!("{} is {}", r.id, other.as_str())),
    }
    if s.status.governance_hash.as_deref() != Some(s.repo.governance_hash.as_str()) {
        return Err("governance.toml changed since the repository was initialised: its approvers are not the ones the log recorded".into());
    }
    let m = revision::verify(&s.repo, &r.id, &r.revision_hash).map_err(|e| e.to_string())?;
    if let (Some(p), Some(live)) = (&m.parent, &s.status.live) {
        if &p.id != live {
            return Err(format!(
                "{} was built and reviewed against {}, but {live} is live now: make a new revision from the live rules",
                r.id, p.id
            ));
        }
    }
    r.approvers_if_enough(gov.required).map_err(|no| {
        format!(
            "{} has {} valid approval(s), governance.toml requires {}{}",
            r.id, no.valid, gov.required, no.why_not
        )
    })
}

/// `revision rollback`: make an earlier live revision live again (by
/// default the one live before the current one), as a new entry.
pub fn rollback(
    root: &Path,
    key: &Path,
    to: Option<&str>,
    reason: Option<&str>,
) -> Result<ExitCode, CliError> {
    let k = KeyPair::load(key)?;
    let mut s = Session::open(root)?;
    s.approver(&k, "roll back")?;
    let current = s
        .status
        .live
        .clone()
        .ok_or_else(|| CliError::refused("nothing is live"))?;
    let stack = &s.status.live_stack;
    let target = match to {
        Some(t) if t == current => return Err(CliError::refused(format!("{t} is live already"))),
        Some(t)
            if stack.iter().any(|x| x == t)
                || matches!(s.revision(t)?.state, State::Superseded | State::RolledBack) =>
        {
            t.to_string()
        }
        Some(t) => {
            return Err(CliError::refused(format!(
                "{t} was never live: only earlier live revisions are rolled back to"
            )))
        }
        None => stack
            .len()
            .checked_sub(2)
            .map(|i| stack[i].clone())
            .ok_or_else(|| {
                CliError::refused(format!(
                    "{current} is the first live revision: there is nothing to roll back to"
                ))
            })?,
    };
    let t = s.revision(&target)?.clone();
    revision::verify(&s.repo, &target, &t.revision_hash)?;
    let mut entry = Entry::new(Event::RolledBack, &target, &t.revision_hash, &t.rules_hash);
    entry.reason = reason.map(str::to_string);
    entry.live_version = Some(s.status.live_version + 1);
    entry.previous_live = Some(current.clone());
    let e = s.append(entry, Some(&k))?;
    write_live(&s, &target)?;
    println!(
        "rolled back {current} to {target} by {}: live version {}{}",
        k.name,
        e.live_version.unwrap_or(0),
        reason.map(|r| format!(" ({r})")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Point `LIVE` at revision `id`.
fn write_live(s: &Session, id: &str) -> Result<(), CliError> {
    let r = s.revision(id)?;
    let live = serde_json::json!({
        "revision": id,
        "revision_hash": r.revision_hash,
        "rules_hash": r.rules_hash,
        "rules_dir": format!("revisions/{id}/rules"),
        "live_version": s.status.live_version,
        "since": now_rfc3339(),
    });
    write_atomic(&s.repo.live_pointer(), format!("{live:#}\n").as_bytes())
}

/// `revision log`: the change log, and with `verify` every problem in it.
pub fn log(root: &Path, verify: bool, json: bool) -> Result<ExitCode, CliError> {
    let repo = Repo::open(root)?;
    let lines = changelog::read_lines(&repo)?;
    let problems = if verify {
        changelog::verify(&repo)?
    } else {
        Vec::new()
    };
    let problems = [
        problems,
        if verify {
            live_problems(&repo, &lines)?
        } else {
            Vec::new()
        },
    ]
    .concat();
    let head = lines.last().map_or(changelog::GENESIS.to_string(), |l| {
        sha256_hex(l.text.as_bytes())
    });
    if json {
        for l in &lines {
            println!("{}", l.text);
        }
        if verify {
            let v = serde_json::json!({"verified": problems.is_empty(), "entries": lines.len(), "head": head, "problems": problems});
            println!("{v}");
        }
    } else {
        for l in &lines {
            match &l.entry {
                Some(e) => println!("{}", describe(e)),
                None => println!("#?  (line {} does not parse)", l.number),
            }
        }
        if verify {
            for p in &problems {
                println!("problem: {p}");
            }
            match problems.is_empty() {
                true => println!(
                    "verified: {} entries, chain and signatures intact; head {head}",
                    lines.len()
                ),
                false => println!(
                    "NOT verified: {} problem(s) in {} entries",
                    problems.len(),
                    lines.len()
                ),
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per entry for people.
fn describe(e: &Entry) -> String {
    let mut s = format!(
        "#{:<3} {}  {:<15} {:<6} by {}",
        e.seq,
        e.at,
        e.event.as_str(),
        e.revision,
        e.actor
    );
    if let Some(p) = &e.previous_live {
        s.push_str(&format!(" (was {p})"));
    }
    if let Some(v) = e.live_version {
        s.push_str(&format!(" live version {v}"));
    }
    if !e.approvers.is_empty() {
        s.push_str(&format!(" approved by {}", e.approvers.join(", ")));
    }
    if let Some(ev) = &e.evidence {
        s.push_str(&format!(" report {}", short(ev)));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(": {r}"));
    }
    s
}

/// Whether `LIVE` and each revision's files agree with the log.
fn live_problems(repo: &Repo, lines: &[changelog::Line]) -> Result<Vec<String>, CliError> {
    let entries: Vec<Entry> = lines.iter().filter_map(|l| l.entry.clone()).collect();
    let status = state::derive(&entries, &repo.governance);
    let mut problems = Vec::new();
    for r in status.revisions.values() {
        if let Err(e) = revision::verify(repo, &r.id, &r.revision_hash) {
            problems.push(e.to_string());
        }
    }
    let path = repo.live_pointer();
    let live: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if live["revision"].as_str() != status.live.as_deref() {
        problems.push(format!(
            "{} names {} but the change log says {} is live",
            path.display(),
            live["revision"],
            status.live.as_deref().unwrap_or("nothing")
        ));
    }
    if status.governance_hash.as_deref() != Some(repo.governance_hash.as_str())
        && !entries.is_empty()
    {
        problems.push("governance.toml changed since the repository was initialised".into());
    }
    Ok(problems)
}

/// `revision show`: a revision's manifest, state, approvals and history.
pub fn show(root: &Path, id: &str, json: bool) -> Result<ExitCode, CliError> {
    let repo = Repo::open(root)?;
    let entries = changelog::read_verified(&repo)?;
    let status = state::derive(&entries, &repo.governance);
    let r = status.revisions.get(id).ok_or_else(|| {
        CliError::refused(format!(
            "no revision `{id}` in the change log of {}",
            root.display()
        ))
    })?;
    let m = Manifest::load(&repo, id)?;
    let integrity = revision::verify(&repo, id, &r.revision_hash).map(|_| "ok".to_string());
    let history: Vec<&Entry> = entries.iter().filter(|e| e.revision == id).collect();
    if json {
        let v = serde_json::json!({
            "id": id, "state": r.state, "revision_hash": r.revision_hash, "manifest": m,
            "integrity": integrity.as_ref().map_or_else(|e| e.to_string(), |s| s.clone()),
            "approvals": r.approvals, "history": history,
        });
        println!("{v:#}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{id}  {}  \"{}\"", r.state.as_str(), m.change_request.title);
    println!("  requested by  {}", m.change_request.requested_by);
    if let Some(o) = &m.change_request.objective {
        println!("  objective     {o}");
    }
    println!(
        "  author        {}  created {}",
        m.author.name, m.created_at
    );
    println!(
        "  parent        {}",
        m.parent.as_ref().map_or("none".into(), |p| p.id.clone())
    );
    println!(
        "  rules         {} {} ({} files, from {})",
        m.ruleset,
        m.rules_hash,
        m.files.len(),
        m.source
    );
    println!("  revision hash {}", r.revision_hash);
    if let Some(n) = &m.notes {
        println!("  notes         {n}");
    }
    match &integrity {
        Ok(_) => {
            println!("  integrity     ok (files and manifest match the hash the author signed)")
        }
        Err(e) => println!("  integrity     FAILED: {e}"),
    }
    for a in &r.approvals {
        let ev = a
            .evidence
            .as_deref()
            .map_or("no report".to_string(), |h| format!("report {h}"));
        match &a.invalid {
            None => println!("  approval      {} at {} ({ev})", a.approver, a.at),
            Some(why) => println!(
                "  approval      {} at {} does NOT count: {why}",
                a.approver, a.at
            ),
        }
    }
    for e in history {
        println!("  {}", describe(e));
    }
    Ok(if integrity.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
