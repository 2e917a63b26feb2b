//! Exact replay of a decision log.
//!
//! A decision record names its rule version by content hash. Replay finds
//! that exact version (the rule directory given, if its hash matches, or
//! the archive the engine wrote on publish), re-decides with the logged
//! context, time, limit and customer (hence the same arm and seed), and
//! compares every candidate. Sensitive attributes were masked before the
//! log was written, so a decision that read one cannot be reproduced from
//! the log alone; replay reports those separately from real mismatches.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::reader::{LogReader, ReadProblems};
use crate::base::{Error, Timestamp};
use crate::decide::decision::Decision;
use crate::decide::request::{DecisionRequest, RequestJson};
use crate::decide::{Mode, ReplayState};
use crate::engine::Engine;
use crate::ruleset::{RuleSet, RuleSource};

/// The result of a replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// The files read, in the order read (rotated files oldest first).
    pub files: Vec<PathBuf>,
    /// Records read.
    pub records: usize,
    /// Decision records among them.
    pub decisions: usize,
    /// Outcome records among them.
    pub outcomes: usize,
    /// Decisions re-decided and identical.
    pub matched: usize,
    /// Decisions that differ, with what differs.
    pub mismatches: Vec<String>,
    /// Decisions that differ and read a masked attribute: not reproducible
    /// from the log (see the README).
    pub masked: Vec<String>,
    /// Decisions whose rule version could not be found.
    pub unavailable: Vec<String>,
    /// Reading problems (partial last line, corrupt lines).
    pub read: ReadProblems,
}

impl ReplayReport {
    /// Whether every decision replayed exactly and no line was corrupt.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
            && self.unavailable.is_empty()
            && self.read.corrupt_lines.is_empty()
    }
}

/// Where replay looks for rule versions.
#[derive(Debug, Clone, Default)]
pub struct VersionSources {
    /// A rule directory; used for records whose hash equals its hash.
    pub rules_dir: Option<PathBuf>,
    /// The version archive the engine writes (`decision_log.archive_dir`).
    pub archive_dir: Option<PathBuf>,
}

/// Re-decide every decision in the log and compare. `paths` are files,
/// directories or patterns of rotated files ([`crate::audit::reader::log_files`]
/// says how they are put in order); the records stream through one at a
/// time, so memory does not grow with the log (only with the number of
/// rule versions it names and the problems it reports).
pub fn replay(paths: &[PathBuf], sources: &VersionSources) -> Result<ReplayReport, Error> {
    let mut reader = LogReader::open(paths)?;
    let mut report = ReplayReport {
        files: reader.files().to_vec(),
        ..ReplayReport::default()
    };
    let given = match &sources.rules_dir {
        Some(d) => Some(Arc::new(Engine::from_dir(d)?)),
        None => None,
    };
    let mut engines: HashMap<String, Option<Arc<Engine>>> = HashMap::new();
    for l in reader.by_ref() {
        let l = l?;
        let at = || format!("{}:{}", l.file.display(), l.line);
        match l.record.get("kind").and_then(|k| k.as_str()) {
            Some("outcome") => {
                report.outcomes += 1;
                continue;
            }
            Some("decision") => report.decisions += 1,
            _ => continue,
        }
        let hash = l.record["ruleset"]["hash"].as_str().unwrap_or_default();
        if !engines.contains_key(hash) {
            let found = find_version(hash, given.as_ref(), sources);
            engines.insert(hash.to_string(), found);
        }
        let Some(engine) = engines[hash].clone() else {
            let have = given
                .as_ref()
                .map(|e| e.current().rules().hash().to_string());
            report.unavailable.push(format!(
                "{}: the decision was made by version {hash}, {}; pass the matching rule directory or --archive",
                at(),
                match have {
                    Some(h) => format!("but the rule directory given has hash {h}"),
                    None => "which is not in the archive".into(),
                }
            ));
            continue;
        };
        match replay_one(&engine, &l.record) {
            Ok(None) => report.matched += 1,
            Ok(Some((diff, masked))) => {
                if masked {
                    report.masked.push(format!("{}: {diff}", at()));
                } else {
                    report.mismatches.push(format!("{}: {diff}", at()));
                }
            }
            Err(e) => report
                .mismatches
                .push(format!("{}: cannot re-decide: {e}", at())),
        }
    }
    report.records = reader.records();
    report.read = reader.into_problems();
    Ok(report)
}

fn find_version(
    hash: &str,
    given: Option<&Arc<Engine>>,
    sources: &VersionSources,
) -> Option<Arc<Engine>> {
    if let Some(e) = given.filter(|e| e.current().rules().hash() == hash) {
        return Some(e.clone());
    }
    let dir = sources.archive_dir.as_ref()?.join(hash);
    let src = RuleSource::from_archive(&dir).ok()?;
    let rules = RuleSet::compile(&src).ok()?;
    (rules.hash() == hash).then(|| Arc::new(Engine::new(rules)))
}

/// A logged decision's request and the engine state it read, rebuilt for
/// `schema`, and the attributes the log masked (left out of the context).
pub(crate) fn logged_request(
    schema: &Arc<crate::context::schema::Schema>,
    rec: &serde_json::Value,
) -> Result<(DecisionRequest, ReplayState, Vec<String>), Error> {
    let masked: Vec<String> = rec["masked"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut context = rec["context"].as_object().cloned().unwrap_or_default();
    for m in &masked {
        context.remove(m);
    }
    let now = Timestamp::parse(rec["timestamp"].as_str().unwrap_or_default())
        .map_err(Error::InvalidRequest)?;
    let raw = RequestJson {
        customer_id: rec["customer_id"].as_str().unwrap_or_default().to_string(),
        channel: rec["channel"].as_str().unwrap_or_default().to_string(),
        context,
        limit: rec["limit"].as_u64(),
        explain: true,
        now: None,
    };
    let mut req: DecisionRequest = raw.bind(schema)?;
    req.now = Some(now);
    let replaying = ReplayState {
        timed_out: rec["timed_out"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| match h.as_str() {
                Some(hook @ ("derive" | "adjust" | "select")) => Some(hook.to_string()),
                _ => None,
            })
            .collect(),
        blocked: rec["blocked"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let stage = crate::ruleset::Stage::parse(b[1].as_str()?)?;
                Some((
                    b[0].as_str()?.to_string(),
                    stage,
                    b[2].as_str()?.to_string(),
                ))
            })
            .collect(),
        evidence: rec["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e[0].as_str()?.to_string(),
                    u32::try_from(e[1].as_u64()?).ok()?,
                    u32::try_from(e[2].as_u64()?).ok()?,
                ))
            })
            .collect(),
        model_evidence: rec["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e.as_array().is_some_and(|a| a.len() == 5))
            .filter_map(|e| {
                Some((
                    e[0].as_str()?.to_string(),
                    // Written as the f64's shortest text: the same f64.
                    e[3].as_f64()?,
                    u32::try_from(e[4].as_u64()?).ok()?,
                ))
            })
            .collect(),
        model_snapshot: rec["model"]["snapshot"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok()),
        seed: rec["seed"].as_u64(),
    };
    Ok((req, replaying, masked))
}

/// Re-decide one record; `None` if identical, else what differs and whether
/// the decision read a masked attribute.
fn replay_one(engine: &Engine, rec: &serde_json::Value) -> Result<Option<(String, bool)>, Error> {
    let (req, replaying, masked) = logged_request(&engine.schema(), rec)?;
    let req = req.mode(Mode::Replay(Arc::new(replaying)));
    let d = engine.decide(&req)?;
    let diff = compare(rec, &d).or_else(|| compare_models(rec, &d, &req));
    let rules = engine.current();
    let reads_masked = masked.iter().any(|m| rules.rules().reads_attribute(m));
    Ok(diff.map(|what| (what, reads_masked)))
}

/// The logged predictive models against the replayed decision's: the
/// same names and versions, and the same scores, bit for bit.
fn compare_models(rec: &serde_json::Value, d: &Decision, req: &DecisionRequest) -> Option<String> {
    let rules = d.ruleset();
    let logged = rec["models"].as_array().map_or(&[][..], Vec::as_slice);
    let versions: Vec<(&str, &str)> = rules.model_versions().collect();
    let logged_versions: Vec<(&str, &str)> = logged
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default(),
                m["hash"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    if logged_versions != versions {
        return Some(format!(
            "models {logged_versions:?} were logged, the version has {versions:?}"
        ));
    }
    let ctx = req.context.bound_to(&rules.schema);
    for (m, l) in rules.models.iter().zip(logged) {
        let Some(score) = l.get("score") else {
            continue;
        };
        let replayed = m.score(&ctx);
        if score.as_f64() != replayed {
            return Some(format!(
                "model {}: score {score} was logged, replay scored {replayed:?}",
                m.name
            ));
        }
    }
    None
}

fn compare(rec: &serde_json::Value, d: &Decision) -> Option<String> {
    let logged_actions: Vec<&str> = rec["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if logged_actions != d.action_ids() {
        return Some(format!(
            "actions {logged_actions:?} were logged, replay chose {:?}",
            d.action_ids()
        ));
    }
    if rec["arm"].as_str() != Some(d.arm().as_str()) {
        return Some(format!(
            "arm {} was logged, replay assigned {}",
            rec["arm"],
            d.arm().as_str()
        ));
    }
    if rec["seed"].as_u64() != d.seed() {
        return Some(format!(
            "seed {} was logged, replay drew {:?}",
            rec["seed"],
            d.seed()
        ));
    }
    let cands = rec["candidates"].as_array().cloned().unwrap_or_default();
    let ranked: Vec<_> = cands.iter().filter(|c| c.get("rank").is_some()).collect();
    // A `chosen` record carries only the chosen actions.
    let expected = if rec["detail"] == "chosen" {
        d.actions().len()
    } else {
        d.ranked().len()
    };
    if ranked.len() != expected {
        return Some(format!(
            "{} ranked candidates were logged, replay ranked {}",
            ranked.len(),
            d.ranked().len()
        ));
    }
    for (c, r) in ranked.iter().zip(d.ranked()) {
        if c["action"].as_str() != Some(r.action()) || c["priority"].as_f64() != Some(r.priority())
        {
            return Some(format!(
                "rank {}: {} with priority {} was logged, replay has {} with {}",
                r.rank(),
                c["action"],
                c["priority"],
                r.action(),
                r.priority()
            ));
        }
    }
    // The removed candidates as logged: under their stage in `removed`
    // (`stages`), or in `candidates` with their condition (`all`).
    let mut removed: Vec<(&str, &str, Option<&serde_json::Value>)> = Vec::new();
    for (stage, actions) in rec["removed"].as_object().into_iter().flatten() {
        for action in actions.as_array().into_iter().flatten() {
            removed.push((action.as_str().unwrap_or_default(), stage, None));
        }
    }
    for c in cands.iter().filter(|c| c.get("stage").is_some()) {
        removed.push((
            c["action"].as_str().unwrap_or_default(),
            c["stage"].as_str().unwrap_or_default(),
            Some(&c["condition"]),
        ));
    }
    for &(action, stage, condition) in &removed {
        let by = condition.map_or(String::new(), |c| format!(" by {c}"));
        match d.filtered().find(|f| f.action() == action) {
            Some(f)
                if f.stage().as_str() == stage
                    && condition.is_none_or(|c| c.as_str() == f.condition()) => {}
            Some(f) => {
                return Some(format!(
                    "{action}: removed at {stage}{by} was logged, replay removed it at {}{}",
                    f.stage(),
                    condition.map_or(String::new(), |_| format!(" by {:?}", f.condition()))
                ))
            }
            None => {
                return Some(format!(
                    "{action}: removed at {stage} was logged, replay kept it"
                ))
            }
        }
    }
    // Records that list every removed candidate list as many as replay
    // removes (`ranked` and `chosen` records list none).
    let replayed = d.filtered().count();
    if (rec["removed"].is_object() || rec["detail"] == "all") && removed.len() != replayed {
        return Some(format!(
            "{} removed candidates were logged, replay removed {replayed}",
            removed.len()
        ));
    }
    None
}
